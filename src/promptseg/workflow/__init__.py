"""The headless annotation workflow shared by the CLI, the dock and the demo."""
