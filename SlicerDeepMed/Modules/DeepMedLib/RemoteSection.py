"""'Run on: this computer | a remote machine' for the Train and Run panels (docs/remote.md).

The host settings are user preferences (``DeepMed/Remote/...``; no password: ssh uses the user's keys and
``~/.ssh/config``). *Check connection* runs ``deepmed remote check`` (versions compared); ``runner()`` gives
the panel a RemoteEngineRunner when a remote machine is chosen (None: this computer); after a dropped
connection the panel offers *Reattach* (``disconnectedJob``).
"""

from __future__ import annotations

import qt
from slicer.i18n import tr as _

from DeepMedLib.EngineCommand import EngineRunner
from DeepMedLib.ModuleWidget import preference, setPreference
from DeepMedLib.PanelHelpers import pollTimer
from DeepMedLib.RemoteRunner import RemoteEngineRunner, disconnection, hostArguments

THIS_COMPUTER, REMOTE = 0, 1


def textFields() -> tuple:
    """(setting, label, hint) of the host's text fields."""
    return (("host", _("Host:"), _("gpu-server or an ~/.ssh/config alias")),
            ("user", _("User:"), _("(ssh's default)")),
            ("python", _("Remote Python:"), _("python3, /opt/venv/bin/python, conda run -n deepmed python")),
            ("workdir", _("Remote folder:"), "~/deepmed-remote"),
            ("ssh_config", _("SSH config file:"), _("(optional: ssh -F)")),
            ("identity", _("Key file:"), _("(optional: ssh -i)")))


class RemoteSection:
    """Widgets added as rows of ``formLayout``; ``onChanged()`` after each change of choice."""

    def __init__(self, formLayout, onChanged=None, onReattach=None, runner: EngineRunner | None = None):
        self.onChanged, self.onReattach = onChanged, onReattach
        self.localRunner = runner or EngineRunner()
        self.checkJob = None
        self.timer = pollTimer(self.poll)
        self.disconnectedJob = None     # {"job_file": ..., ...} of the last dropped connection
        self.runOnComboBox = qt.QComboBox()
        self.runOnComboBox.addItems([_("this computer"), _("a remote machine")])
        self.runOnComboBox.objectName = "runOnComboBox"
        formLayout.addRow(_("Run on:"), self.runOnComboBox)
        self.hostBox = qt.QWidget()
        self.hostBox.objectName = "remoteHostBox"
        hostLayout = qt.QFormLayout(self.hostBox)
        self.fields = {}
        for key, label, hint in textFields():
            field = qt.QLineEdit()
            field.placeholderText = hint
            field.text = str(preference(f"Remote/{key}", ""))
            field.editingFinished.connect(self.save)
            hostLayout.addRow(label, field)
            self.fields[key] = field
        self.portSpinBox = qt.QSpinBox()
        self.portSpinBox.setRange(0, 65535)
        self.portSpinBox.specialValueText = _("(ssh's default)")
        self.portSpinBox.value = int(preference("Remote/port", 0) or 0)
        hostLayout.insertRow(2, _("Port:"), self.portSpinBox)
        self.checkButton = qt.QPushButton(_("Check connection"))
        self.reattachButton = qt.QPushButton(_("Reattach"))
        self.reattachButton.toolTip = _("Follow the remote run again after a dropped connection")
        buttons = qt.QHBoxLayout()
        buttons.addWidget(self.checkButton)
        buttons.addWidget(self.reattachButton)
        hostLayout.addRow(buttons)
        self.statusLabel = qt.QLabel("")
        self.statusLabel.wordWrap = True
        hostLayout.addRow(self.statusLabel)
        formLayout.addRow(self.hostBox)
        self.runOnComboBox.currentIndex = REMOTE if preference("Remote/enabled", "false") == "true" else THIS_COMPUTER
        self.runOnComboBox.currentIndexChanged.connect(self._onRunOnChanged)
        self.portSpinBox.valueChanged.connect(self.save)
        self.checkButton.clicked.connect(self.onCheck)
        self.reattachButton.clicked.connect(lambda: self.onReattach and self.onReattach(self.disconnectedJob))
        self.updateWidgets()

    # ---- settings --------------------------------------------------------------------------------
    @property
    def remote(self) -> bool:
        return self.runOnComboBox.currentIndex == REMOTE

    def host(self) -> dict:
        values = {key: field.text.strip() for key, field in self.fields.items()}
        values["port"] = int(self.portSpinBox.value)
        return values

    def save(self, *args) -> None:
        setPreference("Remote/enabled", "true" if self.remote else "false")
        for key, value in self.host().items():
            setPreference(f"Remote/{key}", value)

    def chooseHost(self, host: dict) -> None:
        """Choose 'a remote machine' with these settings (scripts, tests): as typed into the fields."""
        self.runOnComboBox.currentIndex = REMOTE
        for key, value in host.items():
            if key == "port":
                self.portSpinBox.value = int(value)
            else:
                self.fields[key].text = str(value)
        self.save()

    def state(self) -> dict:
        """What the section shows (scripts, tests): the choice, the host box, the buttons, the status line."""
        return {"runOn": self.runOnComboBox.currentText, "hostShown": not self.hostBox.isHidden(),
                "canCheck": self.checkButton.enabled, "canReattach": self.reattachButton.enabled,
                "status": self.statusLabel.text}

    def runner(self):
        """The runner for trainings/inferences: remote (settings checked) or None for this computer."""
        if not self.remote:
            return None
        if not self.host()["host"]:
            raise ValueError(_("Run on a remote machine: enter the host name (or ~/.ssh/config alias)"))
        self.save()
        return RemoteEngineRunner(self.host(), command=self.localRunner.command,
                                  environment=self.localRunner.environment)

    # ---- connection check, dropped connections ---------------------------------------------------
    def onCheck(self) -> None:
        self.save()
        self.statusLabel.text = _("Connecting to {host}...").format(host=self.host()["host"])
        self.checkJob = self.localRunner.start("connection check", "remote", "check", *hostArguments(self.host()))
        self.checkJob.finished.connect(self._onChecked)
        self.timer.start()
        self.updateWidgets()

    def poll(self) -> None:
        if self.checkJob is not None:
            self.checkJob.poll()

    def _onChecked(self, result) -> None:
        job, self.checkJob = self.checkJob, None
        self.timer.stop()
        self.statusLabel.text = (job.output[-1] if job.output else _("connected")) if result.succeeded else \
            _("Cannot use it: {error}").format(error=result.errorMessage.splitlines()[0] if result.errorMessage else "")
        self.updateWidgets()

    def noteFinished(self, result) -> bool:
        """Remember a dropped connection (True: the run goes on remotely; Reattach is offered)."""
        self.disconnectedJob = disconnection(result)
        if self.disconnectedJob is not None:
            self.statusLabel.text = _("Connection lost; the remote run goes on. Reattach to follow it again.")
        self.updateWidgets()
        return self.disconnectedJob is not None

    def reattachRunner(self) -> RemoteEngineRunner:
        """The runner following the dropped run again (forgets it: Reattach is offered once per drop)."""
        self.disconnectedJob = None
        self.updateWidgets()
        return RemoteEngineRunner(self.host(), command=self.localRunner.command,
                                  environment=self.localRunner.environment)

    def _onRunOnChanged(self, *args) -> None:
        self.save()
        self.updateWidgets()
        if self.onChanged is not None:
            self.onChanged()

    def updateWidgets(self) -> None:
        self.hostBox.visible = self.remote
        self.checkButton.enabled = self.checkJob is None
        self.reattachButton.enabled = self.disconnectedJob is not None
        self.reattachButton.visible = self.onReattach is not None  # panels whose runs can be followed again
