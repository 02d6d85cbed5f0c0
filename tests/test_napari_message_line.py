"""MessageLine: one message, no repeats, cleared with its cause, warnings also to napari."""
import pytest

pytest.importorskip("qtpy")


def test_message_line_replaces_dedupes_and_clears(qtbot, monkeypatch):
    from promptseg.napari import message_line
    from promptseg.napari.message_line import MessageLine

    sent = []
    monkeypatch.setattr(message_line, "_notify", lambda text, level: sent.append((level, text)))
    line = MessageLine()
    for _ in range(3):
        line.warn("open a project first", cause="no-project")
    assert line.text() == "⚠ open a project first"
    assert sent == [("warning", "open a project first")]      # three triggers, one notification
    line.say("⚠ open a project first", "warning")               # a prefixed copy is the same message
    assert sent == [("warning", "open a project first")]
    line.clear_cause("no-image")                                  # another cause: stays
    assert line.text() == "⚠ open a project first"
    line.clear_cause("no-project")                                # its cause is gone: clears
    assert line.text() == "" and line.message == ""
    line.say("Proposed nucleus")
    line.error("model failed to load")
    assert line.text() == "⛔ model failed to load" and sent[-1] == ("error", "model failed to load")
    with pytest.raises(ValueError, match="level"):
        line.say("x", "loud")
