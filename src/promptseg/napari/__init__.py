"""napari glue: the only part of promptseg that imports Qt or napari."""
