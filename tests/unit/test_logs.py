"""softswitch.logs: a log line never raises, whatever happened to the stream."""

from __future__ import annotations

import os

from softswitch.logs import StreamLogger


def test_a_pipe_whose_reader_died_swallows_lines() -> None:
    read_end, write_end = os.pipe()
    stream = os.fdopen(write_end, "w")
    logger = StreamLogger(stream)
    logger.msg("first")
    assert os.read(read_end, 100) == b"first\n"
    os.close(read_end)  # the reader exits (tee after Ctrl-C)
    logger.msg("second")  # EPIPE: must not raise
    assert logger.lost
    logger.error("third")
    stream.close()  # flushes to /dev/null now: no BrokenPipeError at exit either


def test_a_closed_stream_swallows_lines() -> None:
    read_end, write_end = os.pipe()
    stream = os.fdopen(write_end, "w")
    stream.close()
    logger = StreamLogger(stream)
    logger.info("anything")
    assert logger.lost
    os.close(read_end)
