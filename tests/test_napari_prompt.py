"""Prompt field: autocomplete from classes + history, typed prompts mapped onto project classes."""
import pytest

from test_napari_project import open_dock, propose, tiny_project

napari = pytest.importorskip("napari")
pytestmark = pytest.mark.gui


def test_map_prompts_with_the_real_text_encoder():
    from promptseg.model.text import TextEncoder
    from promptseg.workflow.class_map import map_prompts, unique_names

    classes = {"nucleus": ["nuc"], "thalamus": [], "left putamen": []}
    m = map_prompts(["Nucleus", "nuc", "cell nucleus", "left thalamus", "putamen", "mitochondria"], classes,
                    TextEncoder())
    assert [(x.name, x.is_new) for x in m] == [
        ("nucleus", False), ("nucleus", False), ("nucleus", False),   # name, synonym, similarity
        ("left thalamus", True),        # laterality differs from "thalamus": never merged
        ("putamen", True),              # nor "putamen" into "left putamen"
        ("mitochondria", True)]
    assert 0.85 <= m[2].score < 1 and m[2].describe().startswith("cell nucleus → nucleus (0.")
    assert unique_names(m[:3]) == ["nucleus"]
    assert [x.name for x in map_prompts(["cell nucleus"], classes, None)] == ["cell nucleus"]  # no encoder


def test_autocomplete_and_class_mapping_in_the_dock(make_napari_viewer, qtbot, tmp_path, nuclei):
    from promptseg.project import Project

    project = tiny_project(tmp_path)
    with Project.open(project) as p:
        p.add_class("nucleus")
        p.add_class("thalamus")
    viewer, widget = open_dock(make_napari_viewer, project)
    c = widget.completer
    assert {"nucleus", "thalamus"} <= set(c.words())
    widget.prompt_edit.setText("thalamus; nu")
    assert c.splitPath(widget.prompt_edit.text()) == ["nu"]
    c.setCompletionPrefix("nu")
    assert c.currentCompletion() == "thalamus; nucleus"        # the earlier segment is kept
    assert c.completionCount() == 1

    viewer.add_image(nuclei.items[0].image[:96, :96], name="a")
    widget.project_panel.images.add_layers_btn.click()
    propose(widget, qtbot, "cell nucleus; mitochondria")
    status = widget.status.text()
    assert "cell nucleus → nucleus (0." in status and "mitochondria (new class)" in status
    assert list(viewer.layers["a promptseg"].features["class"]) == ["background", "nucleus", "mitochondria"]
    with Project.open(project) as p:
        assert p.class_by_name("cell nucleus").name == "nucleus"       # remembered as a synonym
        assert p.class_by_name("mitochondria") is not None            # a new name made a class
    assert {"mitochondria", "cell nucleus"} <= set(c.words())
