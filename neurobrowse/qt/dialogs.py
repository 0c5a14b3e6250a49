"""Error dialogs that say what went wrong and how to fix it, without blocking the app."""

from __future__ import annotations

from PySide6.QtWidgets import QMessageBox, QWidget


def show_error(parent: QWidget, title: str, message: str) -> QMessageBox:
    """A window-modal message box opened with ``open()`` (not ``exec()``): the event loop keeps running,
    workers keep delivering, and tests can find and dismiss it. Long messages go in the details."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Warning)
    box.setWindowTitle(f"neurobrowse: {title}")
    head, _, rest = message.partition("\n\n")
    box.setText(f"<b>{title}</b>")
    box.setInformativeText(head)
    if rest.strip():
        box.setDetailedText(rest)
    box.setStandardButtons(QMessageBox.StandardButton.Ok)
    box.setObjectName("neurobrowse-error")
    box.finished.connect(box.deleteLater)
    box.open()
    return box


def close_boxes(boxes) -> None:
    """Close the error boxes a window opened that are still alive (when the window closes)."""
    from shiboken6 import isValid

    for box in boxes:
        if isValid(box):
            box.close()
