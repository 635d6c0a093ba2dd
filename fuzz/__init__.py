"""Coverage-guided fuzzing (atheris) of every parser of untrusted input; see fuzz/run.py."""
