"""Install the ``pixelcnn`` and ``export`` packages and build the extension ``pixelcnn._C``.

C++ sources are always built; CUDA sources whenever torch is a CUDA build and nvcc exists (no GPU needed to
compile; ``PIXELCNN_NO_CUDA=1`` skips them). Build with ``pip install --no-build-isolation -e .`` so the
extension is compiled against the torch that is installed.
"""

import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def _toolkit():
    """pixelcnn/toolkit.py, loaded by path: importing the package would import torch before CUDA_HOME is set."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_pixelcnn_toolkit", os.path.join(HERE, "pixelcnn", "toolkit.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _extensions():
    toolkit = _toolkit()
    cuda_home = None if os.environ.get("PIXELCNN_NO_CUDA") == "1" else toolkit.find_cuda_home()
    if cuda_home:
        os.environ["CUDA_HOME"] = cuda_home  # must be set before torch.utils.cpp_extension is imported
    toolkit.use_cuda_toolkit()
    import torch
    from torch.utils.cpp_extension import CppExtension, CUDAExtension

    with_cuda = bool(cuda_home and torch.version.cuda)
    sources = [
        "csrc/module.cpp",
        "csrc/ops.cpp",
        "csrc/sampler.cpp",
        "csrc/gated_sampler.cpp",
        "csrc/gemm.cpp",
        "csrc/cpu_isa.cpp",
        "csrc/emulation/sampler_emulated.cpp",
        "csrc/emulation/sampler_kernels_emulated.cpp",
        "csrc/emulation/gated_emulated.cpp",
        "csrc/emulation/gated_kernels_emulated.cpp",
    ]
    # the C++ standard comes from torch (C++20 for 2.14); no fused multiply-add unless written out, so that the
    # draw rule (csrc/draw.h) gives the same bits as its Python mirror and the CUDA build (--fmad=false)
    cxx = ["-O3", "-fopenmp", "-ffp-contract=off"]
    if os.environ.get("PIXELCNN_DEBUG") == "1":  # debuggable build: no optimisation, symbols, assert() active
        cxx = ["-O0", "-g", "-UNDEBUG", "-fopenmp", "-ffp-contract=off"]
    if with_cuda:
        if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
            os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0;9.0"
        sources += [
            "csrc/cuda/sampler_cuda.cpp",
            "csrc/cuda/sampler_kernels.cu",
            "csrc/cuda/gated_cuda.cpp",
            "csrc/cuda/gated_kernels.cu",
        ]
        ext = CUDAExtension(
            "pixelcnn._C",
            sources,
            define_macros=[("PIXELCNN_WITH_CUDA", None)],
            extra_compile_args={"cxx": cxx, "nvcc": ["-O3", "--fmad=false"]},
            extra_link_args=["-fopenmp"],
        )
    else:
        print("pixelcnn: building the C++ extension without CUDA (no nvcc/CUDA toolkit or PIXELCNN_NO_CUDA=1)")
        ext = CppExtension("pixelcnn._C", sources, extra_compile_args=cxx, extra_link_args=["-fopenmp"])
    return [ext], {"build_ext": torch.utils.cpp_extension.BuildExtension}


ext_modules, cmdclass = _extensions()

setup(
    name="pixelcnn",
    version="0.1.0",
    description="Class-conditional PixelCNN with Triton, C++/CUDA and ONNX fast paths",
    packages=find_packages(include=["pixelcnn", "pixelcnn.*", "export", "export.*", "benchmarks"]),
    python_requires=">=3.10",
    install_requires=["torch>=2.11", "torchvision", "numpy", "tqdm", "matplotlib", "scikit-learn"],
    extras_require={"gpu": ["onnxruntime-gpu"], "onnx": ["onnx", "onnxruntime", "onnxscript"]},
    entry_points={
        "console_scripts": [
            "pixelcnn-train=pixelcnn.train:main",
            "pixelcnn-sample=pixelcnn.sample:main",
            "pixelcnn-export=export.__main__:main",
        ]
    },
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
