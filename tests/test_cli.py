import json
import subprocess
import sys

import pytest

from nesso.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_info_preset_prints_the_parameter_count(capsys):
    code, out, _ = run(capsys, "info", "nesso-0.4b")
    assert code == 0
    assert "437,760,960 total = 123,125,760 embedding + 314,635,200 non-embedding" in out
    code, out, _ = run(capsys, "info", "nesso-0.4b", "--json")
    assert json.loads(out)["parameters"]["total"] == 437_760_960


def test_info_directory(capsys, tiny_dir):
    code, out, _ = run(capsys, "info", str(tiny_dir))
    assert code == 0 and "float32" in out and str(tiny_dir) in out


def test_generate_default_answers_offline(capsys):
    code, out, _ = run(capsys, "generate", "default", "--prompt", "Ciao, come stai?", "--max-tokens", "16")
    assert code == 0 and len(out.strip()) > 0


def test_generate_int8(capsys):
    code, out, _ = run(capsys, "generate", "default", "--prompt", "What is the capital of France?",
                       "--max-tokens", "12", "--quantize", "int8")
    assert code == 0 and "Paris" in out


def test_export_hf_then_load(capsys, tmp_path, tiny_dir):
    code, out, _ = run(capsys, "export", "hf", str(tiny_dir), "--out", str(tmp_path / "x"), "--dtype", "bfloat16")
    assert code == 0 and (tmp_path / "x" / "model.safetensors").is_file()
    assert json.loads((tmp_path / "x" / "config.json").read_text())["torch_dtype"] == "bfloat16"


@pytest.mark.parametrize("argv,message", [
    (["info", "nesso-9b"], "unknown preset 'nesso-9b'"),
    (["info", "/definitely/missing"], "cannot find model"),
    (["generate", "default", "--prompt", "x", "--max-tokens", "0"], "max_tokens must be a positive integer"),
    (["generate", "default", "--prompt", "x", "--temperature", "-1"], "temperature must be >= 0"),
    (["export", "hf", "nesso-nano", "--out", "/tmp/x", "--dtype", "int3"], "unknown dtype 'int3'"),
])
def test_bad_input_is_one_clear_line(capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == 2 and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_console_script_reports_errors_without_traceback(tmp_path):
    bad = tmp_path / "model"
    bad.mkdir()
    (bad / "config.json").write_text("{}")
    proc = subprocess.run([sys.executable, "-m", "nesso", "info", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("nesso: error:") and "Traceback" not in proc.stderr


def test_an_unreachable_hub_id_is_one_line(capsys, monkeypatch):
    import huggingface_hub

    def offline(*_args, **_kwargs):
        raise ConnectionError("Name or service not known\nPlease check your internet connection and try again.")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    code, _, err = run(capsys, "info", "some-org/some-model")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "could not fetch 'some-org/some-model'" in err and "pass a local directory" in err
