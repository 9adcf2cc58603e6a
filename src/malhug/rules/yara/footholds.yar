// Staying on the machine, damaging it, or changing how the loading process behaves.

rule persistence_cron {
  meta:
    id = "persistence-cron"
    category = "persistence"
    severity = "medium"
    description = "installs or edits a cron job"
  strings:
    $crontab = "crontab" fullword
    $etc = /\/etc\/(crontab|cron\.(d|hourly|daily|weekly|monthly))\b/
    $spool = "/var/spool/cron"
  condition:
    any of them
}

rule persistence_shell_rc {
  meta:
    id = "persistence-shell-rc"
    category = "persistence"
    severity = "medium"
    description = "shell start-up file that runs on every login (.bashrc, .profile, .zshrc)"
  strings:
    $rc = /[~\/\\'"]\.(bashrc|bash_profile|bash_login|profile|zshrc|zprofile|zshenv)\b/
  condition:
    $rc
}

rule persistence_xdg_autostart {
  meta:
    id = "persistence-xdg-autostart"
    category = "persistence"
    severity = "medium"
    description = "desktop autostart folder (~/.config/autostart)"
  strings:
    $user = ".config/autostart"
    $system = "/etc/xdg/autostart"
  condition:
    any of them
}

rule persistence_systemd {
  meta:
    id = "persistence-systemd"
    category = "persistence"
    severity = "medium"
    description = "creates or enables a systemd service"
  strings:
    $enable = /\bsystemctl\s+(--user\s+)?enable\b/
    $system = "/etc/systemd/system"
    $user = ".config/systemd/user"
  condition:
    any of them
}

rule persistence_windows_run_key {
  meta:
    id = "persistence-windows-run-key"
    category = "persistence"
    severity = "medium"
    description = "Windows registry Run/RunOnce key, started at every logon"
  strings:
    $run = /Microsoft[\\\/]{1,2}Windows[\\\/]{1,2}CurrentVersion[\\\/]{1,2}Run(Once|Services|OnceEx)?\b/ nocase
  condition:
    $run
}

rule persistence_windows_startup_folder {
  meta:
    id = "persistence-windows-startup-folder"
    category = "persistence"
    severity = "medium"
    description = "Windows Startup folder, whose contents run at every logon"
  strings:
    $path = /Start Menu[\\\/]{1,2}Programs[\\\/]{1,2}Startup\b/ nocase
    $shell = "shell:startup" nocase
  condition:
    any of them
}

rule persistence_schtasks {
  meta:
    id = "persistence-schtasks"
    category = "persistence"
    severity = "medium"
    description = "creates a Windows scheduled task (schtasks /create)"
  strings:
    $create = /\bschtasks(\.exe)?\s+\/create\b/ nocase
    $ps = /\bRegister-ScheduledTask\b/ nocase
  condition:
    any of them
}

rule persistence_python_startup {
  meta:
    id = "persistence-python-startup"
    category = "persistence"
    severity = "high"
    description = "Python start-up hook (sitecustomize.py, usercustomize.py, a .pth file in site-packages) that runs in every interpreter"
  strings:
    $custom = /\b(sitecustomize|usercustomize)\.py\b/
    $pth = /(site-packages|dist-packages|getsitepackages|getusersitepackages)[^\n]{0,120}\.pth['"]/
  condition:
    any of them
}

rule persistence_ld_preload {
  meta:
    id = "persistence-ld-preload"
    category = "persistence"
    severity = "high"
    description = "system-wide preload list (/etc/ld.so.preload), injects a library into every process"
  strings:
    $preload = "/etc/ld.so.preload"
  condition:
    $preload
}

rule persistence_ssh_authorized_keys {
  meta:
    id = "persistence-ssh-authorized-keys"
    category = "persistence"
    severity = "medium"
    description = "SSH authorized_keys file, where an added key grants remote login"
  strings:
    $keys = /\.ssh[\\\/]{1,2}authorized_keys2?\b/
  condition:
    $keys
}

rule file_tamper_rm_rf_root {
  meta:
    id = "file-tamper-rm-rf-root"
    category = "file_tamper"
    severity = "high"
    description = "recursive forced delete of the root or home directory"
  strings:
    $rm = /\brm\s+(-[rRf]{2,3}|-[rR]\s+-f|-f\s+-[rR])\s+(\/\*?(\s|['"`;]|$)|~\/?\*?(\s|['"`;]|$)|\$HOME\/?\*?(\s|['"`;]|$))/
    $nopreserve = "--no-preserve-root"
  condition:
    any of them
}

rule file_tamper_rmtree_home {
  meta:
    id = "file-tamper-rmtree-home"
    category = "file_tamper"
    severity = "high"
    description = "Python recursive delete of the root or home directory"
  strings:
    $rmtree = /shutil\.rmtree\(\s*(['"]\/['"]|['"]~\/?['"]|os\.path\.expanduser\(\s*['"]~\/?['"]\s*\)|(pathlib\.)?Path\.home\(\)\s*\)|os\.environ\[\s*['"]HOME['"]\s*\])/
  condition:
    $rmtree
}

rule file_tamper_history_wipe {
  meta:
    id = "file-tamper-history-wipe"
    category = "file_tamper"
    severity = "medium"
    description = "erases or disables shell history to hide what was run"
  strings:
    $unset = /\bunset\s+HISTFILE\b/
    $devnull = /\bHISTFILE=\/dev\/null\b/
    $clear = /\bhistory\s+-c\b/
    $zero = /\bHISTSIZE=0\b/
  condition:
    any of them
}

rule model_tamper_torch_patch {
  meta:
    id = "model-tamper-torch-patch"
    category = "model_tamper"
    severity = "high"
    description = "replaces a torch loading/saving function in the running process (torch.load = ...)"
  strings:
    $assign = /(^|[\n;])[ \t]{0,40}torch\.(load|save|jit\.load|hub\.load|serialization\.[a-z_]{1,40}|nn\.Module\.[a-z_]{1,40})\s*=[^=]/
  condition:
    $assign
}

rule model_tamper_library_patch {
  meta:
    id = "model-tamper-library-patch"
    category = "model_tamper"
    severity = "high"
    description = "replaces a function of transformers, safetensors, huggingface_hub or pickle in the running process"
  strings:
    $assign = /(^|[\n;])[ \t]{0,40}(transformers|safetensors|huggingface_hub|pickle|_pickle|joblib|numpy\.lib\.format)(\.[A-Za-z_][A-Za-z0-9_]{0,60}){1,4}\s*=[^=]/
    $setattr = /\bsetattr\(\s*(torch|transformers|safetensors|huggingface_hub|pickle|builtins)\b[\w.]{0,80}\s*,/
  condition:
    any of them
}

rule model_tamper_sys_modules {
  meta:
    id = "model-tamper-sys-modules"
    category = "model_tamper"
    severity = "high"
    description = "swaps a module in sys.modules for another object"
  strings:
    $swap = /\bsys\.modules\[\s*['"](torch|transformers|safetensors|huggingface_hub|pickle|os|subprocess|builtins|numpy)[\w.]{0,80}['"]\s*\]\s*=[^=]/
  condition:
    $swap
}

rule model_tamper_builtins_patch {
  meta:
    id = "model-tamper-builtins-patch"
    category = "model_tamper"
    severity = "high"
    description = "replaces a Python builtin for the whole process (builtins.open = ...)"
  strings:
    $attr = /(^|[\n;])[ \t]{0,40}(__builtins__|builtins)\.[A-Za-z_][A-Za-z0-9_]{0,40}\s*=[^=]/
    $item = /(^|[\n;])[ \t]{0,40}__builtins__\[\s*['"][A-Za-z_][A-Za-z0-9_]{0,40}['"]\s*\]\s*=[^=]/
  condition:
    any of them
}
