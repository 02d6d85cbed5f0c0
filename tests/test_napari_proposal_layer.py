"""The proposal layer made before the first mask (real viewer under Xvfb, default model, bundled
sample): hidden and empty until the mask, then shown as a freshly added layer would be, with
its class names, colours, a mask that matches the gold, and undo."""
import numpy as np
import pytest

napari = pytest.importorskip("napari")
pytestmark = pytest.mark.gui

LAYER = "nuclei_00 promptseg"


def test_the_proposal_layer_is_made_ahead_hidden_then_shows_the_mask(make_napari_viewer, qtbot):
    from promptseg.napari.layers import EMPTY_KEY, class_color

    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-promptseg", "nuclei")
    image = viewer.layers["nuclei_00"]
    _, widget = viewer.window.add_plugin_dock_widget("napari-promptseg", "PromptSeg")
    qtbot.waitUntil(lambda: LAYER in viewer.layers and not widget.layers_ahead.busy, timeout=60_000)
    ahead = viewer.layers[LAYER]
    assert not ahead.visible and not np.any(ahead.data) and ahead.data.shape == image.data.shape[:2]
    assert ahead.metadata.get(EMPTY_KEY) and viewer.layers.selection.active is not ahead
    assert {"polygon", "brush_stroke"} <= set(ahead._overlays)    # the overlays held back are back
    qt_viewer = viewer.window._qt_viewer                           # and the listeners held back ran
    assert ahead in qt_viewer.canvas.layer_to_visual and ahead in qt_viewer.controls.widgets
    assert [ly.name for ly in viewer.layers].count(LAYER) == 1

    widget.prompt_edit.setText("nucleus")
    widget.propose_btn.click()
    qtbot.waitUntil(lambda: widget.state.current is not None and not widget.proposing, timeout=300_000)
    layer = viewer.layers[LAYER]
    assert layer is ahead and layer.visible and viewer.layers.selection.active is layer   # the same layer, reused
    assert EMPTY_KEY not in layer.metadata and layer.metadata["classes"] == ["nucleus"]
    assert list(layer.features["class"]) == ["background", "nucleus"]
    assert np.allclose(layer.colormap.map(1), napari.utils.colormaps.standardize_color.transform_color(
        class_color("nucleus", widget.state.class_colors()))[0])
    gt = viewer.layers["nuclei_00 ground truth"].data > 0
    got = np.asarray(layer.data) > 0
    assert 2 * (got & gt).sum() / (got.sum() + gt.sum()) > 0.8

    before = np.array(layer.data)                  # a brush stroke is undone like on any Labels layer
    layer.paint((5, 5), 1, refresh=True)
    assert not np.array_equal(layer.data, before)
    layer.undo()
    assert np.array_equal(layer.data, before)


def test_the_canvas_visual_and_the_controls_are_made_in_turns_of_their_own(make_napari_viewer):
    """Through napari's public-only proxy, as plugins get the viewer: the insertion's turn makes
    neither the layer's canvas visual nor its controls; the next turn makes the visual, the
    three after it the controls (made, added to their panel, the panel painted)."""
    from types import SimpleNamespace

    from napari.utils._proxies import PublicOnlyProxy
    from promptseg.napari.proposal_layer import ProposalLayers

    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-promptseg", "nuclei")
    image = viewer.layers["nuclei_00"]
    steps = ProposalLayers(SimpleNamespace(viewer=PublicOnlyProxy(viewer), image_layer=lambda: image))._make(image)
    qt_viewer = viewer.window._qt_viewer
    next(steps)                                       # the layer, outside the viewer
    assert LAYER not in viewer.layers
    next(steps)                                       # its insertion
    layer = viewer.layers[LAYER]
    assert layer not in qt_viewer.canvas.layer_to_visual and layer not in qt_viewer.controls.widgets
    next(steps)
    assert layer in qt_viewer.canvas.layer_to_visual and layer not in qt_viewer.controls.widgets
    panel = qt_viewer.controls
    count = panel.count()
    next(steps)                                       # the controls made, outside their panel
    assert layer not in panel.widgets and panel.count() == count
    next(steps)                                       # added, the panel's painting held
    assert layer in panel.widgets and panel.count() == count + 1 and not panel.updatesEnabled()
    next(steps)                                       # the panel paints again
    assert panel.updatesEnabled()
    assert sum(1 for _ in steps) >= 1                 # then the overlays held back, a turn each
    assert {"polygon", "brush_stroke"} <= set(layer._overlays)
    viewer.layers.selection.active = layer            # its controls show as any layer's do
    assert qt_viewer.controls.currentWidget() is qt_viewer.controls.widgets[layer]


def test_a_layer_shown_or_selected_before_it_is_whole_is_finished_first(make_napari_viewer):
    """A mask may arrive, or the user may pick the layer in the list, between the insertion and
    the turns that make its visual and controls: the layer is then finished at once."""
    from types import SimpleNamespace

    from napari.utils._proxies import PublicOnlyProxy
    from promptseg.napari.layers import show_labels
    from promptseg.napari.proposal_layer import ProposalLayers

    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-promptseg", "nuclei")
    image = viewer.layers["nuclei_00"]
    proxy = PublicOnlyProxy(viewer)
    qt_viewer = viewer.window._qt_viewer
    for pick in (True, False):
        ahead = ProposalLayers(SimpleNamespace(viewer=proxy, image_layer=lambda: image))
        ahead._steps = ahead._make(image)
        next(ahead._steps)
        next(ahead._steps)                             # inserted; visual and controls still to come
        layer = viewer.layers[LAYER]
        assert layer not in qt_viewer.controls.widgets
        mask = np.asarray(viewer.layers["nuclei_00 ground truth"].data > 0, np.int32)
        if pick:
            proxy.layers.selection.active = proxy.layers[LAYER]   # as a click in the layer list does
        else:
            show_labels(proxy, LAYER, mask, ["nucleus"])           # as a mask arriving does
            assert layer.visible and viewer.layers.selection.active is layer
            assert np.array_equal(layer.data, mask)
        assert not ahead.busy and layer in qt_viewer.canvas.layer_to_visual
        assert qt_viewer.controls.currentWidget() is qt_viewer.controls.widgets[layer]
        assert {"polygon", "brush_stroke"} <= set(layer._overlays)
        viewer.layers.remove(LAYER)


def test_steps_still_waiting_when_the_window_closes_do_not_keep_it(make_napari_viewer):
    """A pending turn holds the steps until it runs, which may be never once the window closes:
    they must not keep the closed window's QtViewer (napari's leak check)."""
    import gc
    from types import SimpleNamespace

    from napari._qt.qt_viewer import QtViewer
    from napari.utils._proxies import PublicOnlyProxy
    from promptseg.napari.proposal_layer import ProposalLayers

    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-promptseg", "nuclei")
    image = viewer.layers["nuclei_00"]
    ahead = ProposalLayers(SimpleNamespace(viewer=PublicOnlyProxy(viewer), image_layer=lambda: image))
    ahead._steps = ahead._make(image)
    next(ahead._steps)
    next(ahead._steps)                                 # inserted; visual and controls still to come
    assert LAYER in viewer.layers and ahead.busy
    viewer.close()
    gc.collect()
    assert len(QtViewer._instances) == 0


def test_a_mask_fills_shows_and_selects_the_layer_made_ahead_in_turns_of_their_own(make_napari_viewer, qtbot):
    """The dock shows a proposal over three event-loop turns (each makes napari slice, draw or lay
    out controls), then hands the layer on; ``show_labels`` does the same at once."""
    from promptseg.napari.layers import run_in_turns, show_labels_steps
    from promptseg.napari.proposal_layer import ProposalLayers
    from types import SimpleNamespace

    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-promptseg", "nuclei")
    image = viewer.layers["nuclei_00"]
    ahead = ProposalLayers(SimpleNamespace(viewer=viewer, image_layer=lambda: image))
    ahead._steps = ahead._make(image)
    ahead.finish()
    layer = viewer.layers[LAYER]
    mask = np.asarray(viewer.layers["nuclei_00 ground truth"].data > 0, np.int32)
    got = []
    run_in_turns(show_labels_steps(viewer, LAYER, mask, ["nucleus"]), got.append)
    assert np.array_equal(layer.data, mask) and not layer.visible and not got    # filled, hidden
    qtbot.waitUntil(lambda: got == [layer], timeout=5_000)                          # later turns
    assert layer.visible and viewer.layers.selection.active is layer
    assert list(layer.features["class"]) == ["background", "nucleus"]


def test_the_layer_s_turns_do_not_redraw_the_canvas(make_napari_viewer, qtbot):
    """A hidden layer's parts change nothing on screen: the turns that make them ask no redraw
    of the canvas (each costs as much as the part on a software-rendered screen)."""
    from promptseg.napari.proposal_layer import _canvas_not_redrawn

    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-promptseg", "nuclei")
    canvas = viewer.window._qt_viewer.canvas._scene_canvas
    draws = []
    canvas.events.draw.connect(lambda _: draws.append(1))
    qtbot.waitUntil(lambda: not canvas._update_pending, timeout=10_000)
    qtbot.wait(200)
    before = len(draws)
    with _canvas_not_redrawn(viewer):
        canvas.update()                  # what adding a hidden node to the scene asks for
    qtbot.wait(300)
    assert len(draws) == before and not canvas._update_pending
    canvas.update()                      # outside the block it redraws as ever
    qtbot.waitUntil(lambda: len(draws) > before, timeout=5_000)
