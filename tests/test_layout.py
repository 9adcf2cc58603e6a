"""A repository's layout: its type, file roles, the code its configs name, its requirements."""
from __future__ import annotations

import json
import textwrap

import malhug
from malhug.findings import Severity, Verdict
from malhug.sources.base import RepoFile, Repository
from malhug.sources.layout import analyse_layout
from malhug.sources.requirements import parse_requirements

CONFIGURATION = '''
class XConfig:
    model_type = "x"

    def __init__(self, hidden_size=8, **kwargs):
        self.hidden_size = hidden_size
'''

MODELING = '''
from .configuration_x import XConfig
from .layers import Block


class XPreTrainedModel:
    config_class = XConfig


class XModel(XPreTrainedModel):
    def __init__(self, config):
        self.config = config
        self.block = Block(config.hidden_size)

    def forward(self, inputs):
        return self.block(inputs)
'''

LAYERS = '''
class Block:
    def __init__(self, size):
        self.size = size

    def __call__(self, inputs):
        return [value * 2 for value in inputs]
'''

BUILDER = '''
import datasets

from .helpers import clean_text
import features_x

_URL = "https://example.invalid/data.jsonl"


class XDataset(datasets.GeneratorBasedBuilder):
    def _info(self):
        return datasets.DatasetInfo(features=features_x.FEATURES)

    def _split_generators(self, dl_manager):
        path = dl_manager.download(_URL)
        return [datasets.SplitGenerator(name=datasets.Split.TRAIN, gen_kwargs={"path": path})]

    def _generate_examples(self, path):
        with open(path) as handle:
            for index, line in enumerate(handle):
                yield index, {"text": clean_text(line)}
'''


def build(root, files: dict):
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, (dict, list)):
            content = json.dumps(content, indent=2)
        if isinstance(content, str):
            content = textwrap.dedent(content).lstrip("\n")
            path.write_text(content)
        else:
            path.write_bytes(content)
    return root


def scan_repo(root):
    report = malhug.scan(str(root))
    assert not report.errors
    return report.repositories[0], report


def roles(repository) -> dict:
    return dict(repository.roles)


def rules(repository) -> list[str]:
    return [f.rule for f in repository.findings]


def file_result(report, suffix: str):
    return next(f for f in report.files if f.path.endswith(suffix))


# benign twins


def test_model_with_remote_code_is_clean_and_roles_are_set(tmp_path):
    build(tmp_path, {
        "config.json": {"model_type": "x", "architectures": ["XModel"],
                        "auto_map": {"AutoConfig": "configuration_x.XConfig", "AutoModel": "modeling_x.XModel"}},
        "configuration_x.py": CONFIGURATION,
        "modeling_x.py": MODELING,
        "layers.py": LAYERS,
        "model.safetensors": b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ",
        "README.md": "# x\n",
    })
    repository, _ = scan_repo(tmp_path)
    assert repository.type == "model"
    assert repository.verdict is Verdict.CLEAN, repository
    assert roles(repository) == {
        "config.json": "config", "configuration_x.py": "remote_code", "modeling_x.py": "remote_code",
        "layers.py": "remote_code_module", "model.safetensors": "weights",
    }
    assert repository.findings == () and repository.problems == ()


def test_tokenizer_auto_map_with_a_null_fast_class(tmp_path):
    build(tmp_path, {
        "tokenizer_config.json": {"auto_map": {"AutoTokenizer": ["tokenization_x.XTokenizer", None]}},
        "tokenization_x.py": """
            class XTokenizer:
                def tokenize(self, text):
                    return text.split()
        """,
    })
    repository, _ = scan_repo(tmp_path)
    assert repository.verdict is Verdict.CLEAN
    assert roles(repository)["tokenization_x.py"] == "remote_code"
    assert roles(repository)["tokenizer_config.json"] == "config"


def test_class_reexported_by_import_counts_as_defined(tmp_path):
    build(tmp_path, {
        "config.json": {"auto_map": {"AutoModel": "modeling_x.XModel"}},
        "modeling_x.py": "from .impl import Impl as XModel\n",
        "impl.py": "import math\n\n\nclass Impl:\n    pass\n",
    })
    repository, _ = scan_repo(tmp_path)
    assert repository.findings == ()
    assert roles(repository)["impl.py"] == "remote_code_module"


def test_auto_map_module_in_a_package_and_in_a_subfolder_config(tmp_path):
    build(tmp_path, {
        "text_encoder/config.json": {"auto_map": {"AutoModel": "modeling_enc.Encoder"}},
        "text_encoder/modeling_enc.py": "import math\n\n\nclass Encoder:\n    pass\n",
        "config.json": {"auto_map": {"AutoModel": "pkg.modeling.M"}},
        "pkg/__init__.py": "",
        "pkg/modeling.py": "from . import utils\n\nclass M:\n    pass\n",
        "pkg/utils.py": "VALUE = 1\n",
    })
    repository, _ = scan_repo(tmp_path)
    assert repository.findings == () and repository.problems == ()
    assert roles(repository)["text_encoder/modeling_enc.py"] == "remote_code"
    assert roles(repository)["pkg/modeling.py"] == "remote_code"
    assert roles(repository)["pkg/utils.py"] == "remote_code_module"
    assert roles(repository)["pkg/__init__.py"] == "remote_code_module"


def test_dataset_with_builder_script_and_helpers(tmp_path):
    build(tmp_path, {
        "x_dataset.py": BUILDER,
        "helpers.py": "import re\n\nfrom normalise import squash\n\ndef clean_text(line):\n"
                      "    return squash(re.sub(r'\\s+', ' ', line))\n",
        "normalise.py": "def squash(text):\n    return text.strip()\n",
        "features_x.py": "FEATURES = None\n",
        "README.md": "---\nlicense: mit\nconfigs:\n- config_name: default\n---\n# x\n",
    })
    repository, _ = scan_repo(tmp_path)
    assert repository.type == "dataset"
    assert repository.verdict is Verdict.CLEAN, repository
    assert roles(repository) == {
        "x_dataset.py": "dataset_script", "helpers.py": "dataset_module",
        "features_x.py": "dataset_module", "normalise.py": "dataset_module",
    }


def test_dataset_type_from_front_matter_or_infos(tmp_path):
    build(tmp_path / "a", {"README.md": "---\ndataset_info:\n  features: []\n---\n", "data.csv": "a,b\n"})
    build(tmp_path / "b", {"dataset_infos.json": {"default": {}}, "data.csv": "a,b\n"})
    for name in "ab":
        repository, _ = scan_repo(tmp_path / name)
        assert repository.type == "dataset"
        assert repository.verdict is Verdict.CLEAN


def test_space_type_from_front_matter(tmp_path):
    build(tmp_path, {"README.md": "---\ntitle: x\nsdk: gradio\n---\n", "app.py": "print('hello')\n"})
    repository, _ = scan_repo(tmp_path)
    assert repository.type == "space"


def test_source_type_is_kept():
    repo = Repository(location="hf://datasets/org/x", type="dataset",
                      files=[RepoFile("config.json", lambda: _bytes(b'{"model_type": "x"}'), 19)])
    assert analyse_layout(repo).type == "dataset"


def test_diffusers_custom_pipeline_and_component(tmp_path):
    build(tmp_path, {
        "model_index.json": {"_class_name": ["pipeline_x", "XPipeline"], "_diffusers_version": "0.30.0",
                             "unet": ["unet_x", "XUNet"], "scheduler": ["diffusers", "DDIMScheduler"],
                             "text_encoder": ["transformers", "CLIPTextModel"]},
        "pipeline_x.py": "import math\n\n\nclass XPipeline:\n    def __call__(self, prompt):\n        return prompt\n",
        "unet/unet_x.py": "import math\n\n\nclass XUNet:\n    pass\n",
        "unet/config.json": {"_class_name": "XUNet"},
        "unet/diffusion_pytorch_model.safetensors": b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ",
    })
    repository, _ = scan_repo(tmp_path)
    assert repository.type == "model"
    assert repository.verdict is Verdict.CLEAN, repository
    assert roles(repository)["pipeline_x.py"] == "remote_code"
    assert roles(repository)["unet/unet_x.py"] == "remote_code"
    assert roles(repository)["model_index.json"] == "config"


def test_custom_pipeline_key_names_a_module_here(tmp_path):
    build(tmp_path, {
        "model_index.json": {"_class_name": "StableDiffusionPipeline", "custom_pipeline": "my_pipeline"},
        "my_pipeline.py": "import math\n\n\nclass P:\n    pass\n",
    })
    repository, _ = scan_repo(tmp_path)
    assert roles(repository)["my_pipeline.py"] == "remote_code"
    assert repository.findings == ()


def test_hubconf_and_its_modules(tmp_path):
    build(tmp_path, {
        "hubconf.py": "dependencies = ['torch']\nfrom models.net import build\n\ndef net(pretrained=False):\n"
                      "    return build()\n",
        "models/__init__.py": "",
        "models/net.py": "def build():\n    return [1, 2]\n",
    })
    repository, _ = scan_repo(tmp_path)
    assert repository.verdict is Verdict.CLEAN
    assert roles(repository)["hubconf.py"] == "hubconf"
    assert roles(repository)["models/net.py"] == "hubconf_module"


def test_ordinary_requirements_are_clean(tmp_path):
    build(tmp_path, {
        "requirements.txt": """
            # pinned and unpinned names from the index
            torch>=2.0  # a comment
            transformers==4.40.0
            numpy
            accelerate[testing] >=0.20, <1.0 ; python_version >= "3.8"
            sentencepiece==0.2.0 \\
                --hash=sha256:0123456789abcdef
            -r requirements-dev.txt
            --prefer-binary
        """,
        "requirements-dev.txt": "pytest\n",
    })
    repository, _ = scan_repo(tmp_path)
    assert repository.verdict is Verdict.CLEAN, repository
    assert repository.findings == ()
    assert roles(repository) == {"requirements.txt": "requirements", "requirements-dev.txt": "requirements"}


def test_notebook_role(tmp_path):
    notebook = {"cells": [{"cell_type": "code", "source": ["print(1)\n"]}], "metadata": {}, "nbformat": 4}
    build(tmp_path, {"demo.ipynb": notebook})
    repository, _ = scan_repo(tmp_path)
    assert roles(repository) == {"demo.ipynb": "notebook"}
    assert repository.verdict is Verdict.CLEAN


# malicious and broken twins


def test_auto_map_module_missing(tmp_path):
    build(tmp_path, {"config.json": {"model_type": "x", "auto_map": {"AutoModel": "modeling_x.XModel"}}})
    repository, _ = scan_repo(tmp_path)
    finding = next(f for f in repository.findings if f.rule == "repo-missing-remote-code")
    assert finding.severity is Severity.MEDIUM and finding.category == "code_exec"
    assert finding.location.file.endswith("/config.json")
    assert finding.location.line == 4
    assert any("modeling_x.py" in p.reason for p in repository.problems)
    assert repository.verdict is Verdict.SUSPICIOUS


def test_auto_map_class_missing_is_low(tmp_path):
    build(tmp_path, {
        "config.json": {"auto_map": {"AutoModel": "modeling_x.Missing"}},
        "modeling_x.py": "import math\n\n\nclass XModel:\n    pass\n",
    })
    repository, _ = scan_repo(tmp_path)
    assert rules(repository) == ["repo-remote-class-missing"]
    assert repository.findings[0].severity is Severity.LOW
    assert repository.verdict is Verdict.CLEAN


def test_cross_repo_auto_map(tmp_path):
    build(tmp_path, {"config.json": {"model_type": "x",
                                     "auto_map": {"AutoModel": "other/repo--modeling_x.XModel",
                                                  "AutoConfig": "other/repo--configuration_x.XConfig"}}})
    layout_repo, _ = scan_repo(tmp_path)
    assert rules(layout_repo) == ["repo-cross-repo-code", "repo-cross-repo-code"]
    finding = layout_repo.findings[0]
    assert finding.severity is Severity.MEDIUM and finding.category == "code_exec"
    assert finding.message == "remote code is taken from another repository: other/repo (modeling_x.XModel)"
    assert layout_repo.verdict is Verdict.SUSPICIOUS
    from malhug.sources.local import folder_repository
    assert analyse_layout(folder_repository(tmp_path)).cross_repo == ["other/repo"]


def test_auto_map_path_escape(tmp_path):
    (tmp_path / "repo").mkdir()
    (tmp_path / "x.py").write_text("class Class:\n    pass\n")
    build(tmp_path / "repo", {"config.json": {"auto_map": {"AutoModel": "../x.Class",
                                                           "AutoConfig": "/etc/x.Class"}}})
    repository, _ = scan_repo(tmp_path / "repo")
    escapes = [f for f in repository.findings if f.rule == "repo-path-escape"]
    assert len(escapes) == 2
    assert all(f.severity is Severity.HIGH and f.category == "tampering" for f in escapes)
    assert repository.verdict is Verdict.MALICIOUS
    assert "x.py" not in roles(repository) and "../x.py" not in roles(repository)


def test_cross_repo_reference_with_a_path_in_its_name(tmp_path):
    build(tmp_path, {"config.json": {"auto_map": {"AutoModel": "../../x--modeling.M"}}})
    repository, _ = scan_repo(tmp_path)
    assert rules(repository) == ["repo-path-escape"]


def test_malformed_config_is_a_problem_not_a_crash(tmp_path):
    build(tmp_path, {"config.json": '{"model_type": "x", "auto_map": {', "tokenizer_config.json": "[1, 2"})
    repository, _ = scan_repo(tmp_path)
    reasons = [p.reason for p in repository.problems]
    assert any(r.startswith("config.json is not valid JSON: ") for r in reasons)
    assert any(r.startswith("tokenizer_config.json is not valid JSON: ") for r in reasons)
    assert repository.verdict is Verdict.INCONCLUSIVE


def test_odd_config_shapes_do_not_crash(tmp_path):
    build(tmp_path, {
        "config.json": {"auto_map": {"AutoModel": 42, "AutoConfig": {"a": 1}, "AutoTokenizer": [None, None]},
                        "nested": [{"auto_map": {"AutoModel": "nowhere.X"}}]},
        "generation_config.json": [1, 2, 3],
        "model_index.json": {"_class_name": ["pipe"], "unet": [None, None], "vae": "text"},
    })
    repository, _ = scan_repo(tmp_path)
    assert "repo-malformed-auto-map" in rules(repository)
    assert "repo-missing-remote-code" in rules(repository)


def test_requirements_outside_the_index(tmp_path):
    build(tmp_path, {"requirements.txt": """
        numpy==1.26.4
        git+https://example.invalid/pkg.git
        --extra-index-url http://example.invalid/simple
        helper @ https://example.invalid/helper-1.0.tar.gz
        -i http://example.invalid/index
        --find-links=./wheels
        ./vendor/pkg-1.0.whl
        -e .
    """})
    repository, _ = scan_repo(tmp_path)
    outside = [f for f in repository.findings if f.rule == "repo-requirement-outside-index"]
    assert [f.location.line for f in outside] == [2, 3, 4, 5, 6, 7, 8]
    assert all(f.severity is Severity.MEDIUM and f.category == "download_exec" for f in outside)
    assert outside[0].evidence == "git+https://example.invalid/pkg.git"
    assert "http://example.invalid/simple" in outside[1].message
    assert repository.verdict is Verdict.SUSPICIOUS


def test_requirement_include_escaping_the_repository(tmp_path):
    build(tmp_path, {"requirements.txt": "-r ../../other.txt\n"})
    repository, _ = scan_repo(tmp_path)
    assert rules(repository) == ["repo-path-escape"]


def test_requirement_include_missing_only_informs(tmp_path):
    build(tmp_path, {"requirements.txt": "-r extra.txt\nnumpy\n"})
    repository, _ = scan_repo(tmp_path)
    assert rules(repository) == ["repo-requirement-include-missing"]
    assert repository.findings[0].severity is Severity.INFO
    assert repository.verdict is Verdict.CLEAN


def test_requirement_parser_lines():
    entries = parse_requirements("a==1\nb @ file:///tmp/b.whl\n-c constraints.txt\n!!!\n")
    assert [e.source for e in entries] == [None, "file:///tmp/b.whl", None, None]
    assert entries[2].include == "constraints.txt"
    assert entries[3].unparsed


def test_remote_code_module_with_payload_in_init(tmp_path):
    build(tmp_path, {
        "config.json": {"model_type": "x", "auto_map": {"AutoModel": "modeling_x.XModel"}},
        "modeling_x.py": """
            import os


            class XModel:
                def __init__(self, config):
                    self.config = config
                    os.system("id")
        """,
    })
    repository, report = scan_repo(tmp_path)
    assert repository.verdict is Verdict.MALICIOUS
    assert roles(repository)["modeling_x.py"] == "remote_code"
    result = file_result(report, "/modeling_x.py")
    assert result.verdict is Verdict.MALICIOUS
    assert any(f.category == "command_exec" and f.location.file.endswith("/modeling_x.py")
               for f in result.findings)


def test_dataset_module_running_a_command_at_import(tmp_path):
    build(tmp_path, {
        "x_dataset.py": BUILDER,
        "helpers.py": "import subprocess\n\nsubprocess.run(['id'])\n\ndef clean_text(line):\n    return line\n",
        "features_x.py": "FEATURES = None\n",
    })
    repository, report = scan_repo(tmp_path)
    assert repository.verdict is Verdict.MALICIOUS
    assert roles(repository)["helpers.py"] == "dataset_module"
    assert roles(repository)["x_dataset.py"] == "dataset_script"
    result = file_result(report, "/helpers.py")
    assert result.verdict is Verdict.MALICIOUS
    assert any(f.location.line == 3 for f in result.findings)


def test_large_config_is_not_read(tmp_path):
    big = '{"auto_map": {"AutoModel": "m.X"}, "pad": "' + "a" * (4 * 1024 * 1024) + '"}'
    build(tmp_path, {"config.json": big})
    repository, _ = scan_repo(tmp_path)
    assert any("larger than" in p.reason for p in repository.problems)


def _bytes(data: bytes):
    import io

    return io.BytesIO(data)
