"""The project folder row: type a folder, Open; a new project is only created once confirmed.

An existing project opens at once. A folder that does not exist, or holds no project, gets an
inline question ("Create a new project in …? [Create] [Cancel]") instead of a modal dialog, so
nothing blocks and a mistyped path creates nothing. A folder of images is offered as the
images of a new project made in it.
"""
from __future__ import annotations

from typing import Callable

from qtpy.QtWidgets import QLabel, QLineEdit, QVBoxLayout, QWidget

from .message_line import MessageLine
from .rows import button, hrow


class ProjectFolder(QWidget):
    def __init__(self, message: MessageLine, opened: Callable[[object], None]) -> None:
        super().__init__()
        self.message = message          # the Project section's message line
        self.opened = opened            # called with the open Project
        self.plan = None                # the FolderPlan waiting for confirmation
        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("folder of a new or existing project")
        self.path_edit.setToolTip("A project folder to open; a new one is created only after you confirm")
        self.open_btn = button("Open / create", "Open the project in this folder, or offer to create one there")
        self.question = QLabel("")
        self.question.setWordWrap(True)
        self.create_btn = button("Create", "Create the project as asked above")
        self.cancel_btn = button("Cancel", "Create nothing")
        self.confirm = QWidget()
        cl = QVBoxLayout(self.confirm)
        cl.setContentsMargins(0, 0, 0, 0)
        cl.addWidget(self.question)
        cl.addWidget(hrow(self.create_btn, self.cancel_btn))
        self.confirm.setVisible(False)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(hrow(self.path_edit, self.open_btn))
        lay.addWidget(self.confirm)
        self.open_btn.clicked.connect(self.ask)
        self.path_edit.returnPressed.connect(self.ask)
        self.path_edit.textChanged.connect(lambda _t: self._forget())
        self.create_btn.clicked.connect(self.create)
        self.cancel_btn.clicked.connect(self._cancelled)

    def ask(self) -> None:
        """Open the typed folder's project, or ask before creating one."""
        from ..project import Project, ProjectError
        from ..project.seed import plan_folder

        path = self.path_edit.text().strip()
        if not path:
            self.message.warn("type a project folder", cause="folder")
            return
        plan = plan_folder(path)
        if plan.action == "invalid":
            self.message.warn(plan.problem, cause="folder")
            return
        if plan.action == "open":
            try:
                project = Project.open(plan.root)
            except ProjectError as exc:
                self.message.warn(str(exc), cause="folder")
                return
            self._forget()
            self.opened(project)
            return
        self.plan = plan
        if plan.action == "create-from-images":
            n = len(plan.images)
            self.question.setText(f"{plan.root} holds {n} image file{'s' if n != 1 else ''} and no project. "
                                  f"Create a project here from these {n} images?")
        elif plan.root.exists():
            self.question.setText(f"{plan.root} holds no project. Create a new, empty project there?")
        else:
            self.question.setText(f"{plan.root} does not exist. Create a new project there?")
        self.message.clear_cause("folder")
        self.confirm.setVisible(True)

    def create(self) -> None:
        """The user confirmed: create the project (with the folder's images, if any)."""
        from ..project import Project, ProjectError
        from ..project.seed import create_from_images

        plan = self.plan
        if plan is None:
            return
        self._forget()
        skipped: list[str] = []
        try:
            if plan.action == "create-from-images":
                project, skipped = create_from_images(plan)
            else:
                project = Project.create(plan.root)
        except (ProjectError, OSError, ValueError) as exc:
            self.message.warn(f"no project created: {exc}", cause="folder")
            return
        self.opened(project)
        if skipped:
            self.message.warn(f"left out {len(skipped)} file(s): " + "; ".join(skipped), cause="folder")

    def _cancelled(self) -> None:
        self._forget()
        self.message.say("Nothing was created.")

    def _forget(self) -> None:
        self.plan = None
        self.confirm.setVisible(False)
