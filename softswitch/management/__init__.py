"""Operations: what the people running the softswitch see without reading logs.

- `messages.py`: the SIP messages of each call (a bounded ring per Call-ID),
  and the last finished calls kept for inspection.
- `calls.py`: a call as the API shows it (summary and detail), with the
  media figures from one place (`MediaFigures`).
- `ladder.py`: a call's messages drawn as sngrep draws them.
- `metrics.py`: counters kept as plain ints, exposed to Prometheus at scrape time.
- `hep.py`: HEP v3 capture of every SIP message to a Homer collector.
- `api.py`: the HTTP JSON API (twisted.web) and its Service.
"""
