"""The voicemail flows driven by scripted digits, playback ends, hang-ups and time."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rtpmedia.voicemail_ivr import (
    Beep,
    DeleteMessage,
    Digit,
    File,
    HangUp,
    Hangup,
    LeaveMessage,
    LeaveState,
    MailboxMenu,
    MarkHeard,
    MenuState,
    Message,
    MessageRef,
    Play,
    PlaybackDone,
    Prompt,
    Speech,
    StartRecording,
    StopPlayback,
    StopRecording,
    Tick,
)

DONE = PlaybackDone()


# -- leaving a message -------------------------------------------------------------------

def test_greeting_beep_record_until_pound_then_goodbye() -> None:
    flow = LeaveMessage()
    assert flow.start(0.0) == [Play((Prompt("vm-greeting"),))]
    assert flow.handle(DONE, 5.0) == [Play((Beep(),))]
    assert flow.handle(DONE, 5.3) == [StartRecording()]
    assert flow.next_deadline == 185.3
    assert flow.handle(Digit("5"), 8.0) == []  # other keys are part of the message
    assert flow.handle(Digit("#"), 15.3) == [StopRecording(True, 10.0),
                                             Play((Prompt("vm-goodbye"),))]
    assert flow.handle(DONE, 16.0) == [HangUp()]
    assert flow.state is LeaveState.DONE and flow.handle(Hangup(), 17.0) == []


def test_pound_skips_the_owners_greeting_and_hangup_keeps_the_message() -> None:
    flow = LeaveMessage(greeting=File("/data/prompts/greeting-1001.wav"))
    assert flow.start(0.0) == [Play((File("/data/prompts/greeting-1001.wav"),))]
    assert flow.handle(Digit("#"), 1.0) == [StopPlayback(), Play((Beep(),))]
    flow.handle(DONE, 1.3)
    assert flow.handle(Hangup(), 31.3) == [StopRecording(True, 30.0)]
    assert flow.kept is True


def test_max_length_ends_the_recording_and_a_short_one_is_dropped() -> None:
    flow = LeaveMessage(max_length=60.0)
    flow.start(0.0)
    flow.handle(DONE, 2.0)
    flow.handle(DONE, 2.25)
    assert flow.handle(Tick(), 30.0) == []
    effects = flow.handle(Tick(), 62.25)
    assert effects[0] == StopRecording(True, 60.0)
    short = LeaveMessage()
    short.start(0.0)
    short.handle(DONE, 2.0)
    short.handle(DONE, 2.25)
    assert short.handle(Digit("#"), 2.75) == [
        StopRecording(False, 0.5), Play((Prompt("vm-too-short"), Prompt("vm-goodbye")))]


def test_hangup_during_the_greeting_records_nothing() -> None:
    flow = LeaveMessage()
    flow.start(0.0)
    assert flow.handle(Hangup(), 1.0) == []
    assert flow.state is LeaveState.DONE and flow.kept is None


# -- the owner's menu ----------------------------------------------------------------------

MESSAGES = [MessageRef("old1", True), MessageRef("new1", False), MessageRef("new2", False)]


def test_listen_save_delete_and_next_as_asterisk_users_expect() -> None:
    menu = MailboxMenu(MESSAGES)
    assert menu.start(0.0) == [Play((Speech("You have 2 new messages and 1 saved message."),
                                     Prompt("vm-main-menu")))]
    # "1" during the intro: barge-in, then the first new message.
    assert menu.handle(Digit("1"), 1.0) == [
        StopPlayback(), Play((Speech("Message 1."), Message("new1")))]
    assert menu.handle(DONE, 20.0) == [MarkHeard("new1"), Play((Prompt("vm-message-menu"),))]
    assert menu.state is MenuState.MESSAGE_MENU
    # "9" saves and goes on to the next message.
    assert menu.handle(Digit("9"), 21.0) == [
        StopPlayback(), Play((Prompt("vm-saved"), Speech("Message 2."), Message("new2")))]
    # "7" while it plays: heard, deleted, then the next (the old one).
    assert menu.handle(Digit("7"), 22.0) == [
        StopPlayback(), MarkHeard("new2"), DeleteMessage("new2"),
        Play((Prompt("vm-deleted"), Speech("Message 2."), Message("old1")))]
    menu.handle(DONE, 30.0)
    # "#" after the last: no more messages, back to the main menu.
    assert menu.handle(Digit("#"), 31.0) == [
        StopPlayback(), Play((Prompt("vm-no-more"), Prompt("vm-main-menu")))]
    assert menu.state is MenuState.MAIN_MENU
    assert menu.handle(Digit("#"), 32.0) == [StopPlayback(), Play((Prompt("vm-goodbye"),))]
    assert menu.handle(DONE, 33.0) == [HangUp()]
    assert menu.state is MenuState.DONE


def test_repeat_previous_and_first() -> None:
    menu = MailboxMenu(MESSAGES)
    menu.start(0.0)
    menu.handle(DONE, 3.0)
    menu.handle(Digit("1"), 4.0)
    menu.handle(DONE, 10.0)
    assert menu.handle(Digit("5"), 11.0)[-1] == Play((Speech("Message 1."), Message("new1")))
    assert menu.handle(Digit("4"), 12.0)[-1] == Play(
        (Prompt("vm-first"), Speech("Message 1."), Message("new1")))
    menu.handle(Digit("6"), 13.0)
    assert menu.handle(Digit("4"), 14.0)[-1] == Play((Speech("Message 1."), Message("new1")))


def test_silence_replays_the_menu_then_says_goodbye() -> None:
    menu = MailboxMenu([], timeout=5.0, retries=3)
    assert menu.start(0.0)[0] == Play((Prompt("vm-no-messages"), Prompt("vm-main-menu")))
    assert menu.handle(DONE, 4.0) == [] and menu.next_deadline == 9.0
    assert menu.handle(Tick(), 8.0) == []
    assert menu.handle(Tick(), 9.0) == [Play((Prompt("vm-main-menu"),))]
    assert menu.next_deadline is None  # playing again
    menu.handle(DONE, 12.0)
    assert menu.handle(Tick(), 17.0) == [Play((Prompt("vm-main-menu"),))]
    menu.handle(DONE, 20.0)
    assert menu.handle(Tick(), 25.0) == [Play((Prompt("vm-goodbye"),))]
    assert menu.handle(Digit("1"), 25.5) == []  # saying goodbye: keys do nothing
    assert menu.handle(DONE, 26.0) == [HangUp()]


@given(st.lists(st.one_of(st.sampled_from("0123456789*#").map(Digit), st.just(DONE),
                          st.just(Tick())), max_size=60),
       st.lists(st.booleans(), max_size=5))
def test_any_key_sequence_keeps_the_menu_consistent(events: list[object],
                                                    heard: list[bool]) -> None:
    messages = [MessageRef(f"m{i}", h) for i, h in enumerate(heard)]
    menu = MailboxMenu(messages)
    menu.start(0.0)
    deleted: set[str] = set()
    now = 0.0
    for event in events:
        now += 3.0
        for effect in menu.handle(event, now):  # type: ignore[arg-type]
            if isinstance(effect, DeleteMessage):
                assert effect.id not in deleted
                deleted.add(effect.id)
            if isinstance(effect, Play):
                for item in effect.items:
                    if isinstance(item, Message):
                        assert item.id not in deleted
        if menu.state is MenuState.DONE:
            break
        assert 0 <= menu.current <= max(0, len(menu.messages) - 1)
    assert menu.handle(Hangup(), now + 1) == [] and menu.state is MenuState.DONE
