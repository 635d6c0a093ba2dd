"""Exit codes of every `softswitch` command, one meaning each, for scripts.

click itself exits 2 on a usage error; we use 2 for a configuration that
cannot be read, the same kind of "fix the command and try again" mistake.
"""

OK = 0
FAILED = 1  # an error, or the server refused the change (its reasons are printed)
USAGE = 2  # bad options or an unreadable --config
NO_SERVER = 3  # nothing to reload: no server runs on the data dir (files may be edited)
IN_USE = 4  # `run`: another server already runs on this data dir
