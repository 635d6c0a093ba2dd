

def test_overlap_with_the_ephemeral_range() -> None:
    from rtpmedia.relay.ports import ephemeral_overlap, read_ephemeral

    assert ephemeral_overlap(16384, 32767, (32768, 60999)) is None
    assert ephemeral_overlap(30000, 39999, (32768, 60999)) == (32768, 39999)
    assert read_ephemeral("/nonexistent") is None
    here = read_ephemeral()
    assert here is None or here[0] <= here[1]
