"""Install the ``pixelcnn`` and ``export`` packages and build the extension ``pixelcnn._C``.

C++ sources are always built; CUDA sources whenever torch is a CUDA build and nvcc exists (no GPU needed to
compile; ``PIXELCNN_NO_CUDA=1`` skips them). Build with ``pip install --no-build-isolation -e .`` so the
extension is compiled against the torch that is installed.
"""
import glob
import os
import shutil

from setuptools import find_packages, setup


def _cuda_home():
    """The toolkit folder that holds both bin/nvcc and lib*/libcudart.so (torch's guess from PATH may lack the
    library)."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    candidates += sorted(glob.glob("/usr/local/cuda-*"), reverse=True)
    for root in filter(None, candidates):
        if os.path.isfile(os.path.join(root, "bin", "nvcc")) and glob.glob(os.path.join(root, "lib*", "libcudart.so*")):
            return root
    return None


def _extensions():
    cuda_home = None if os.environ.get("PIXELCNN_NO_CUDA") == "1" else _cuda_home()
    if cuda_home:
        os.environ["CUDA_HOME"] = cuda_home  # must be set before torch.utils.cpp_extension is imported
    import torch
    from torch.utils.cpp_extension import CppExtension, CUDAExtension

    with_cuda = bool(cuda_home and torch.version.cuda)
    sources = ["csrc/module.cpp", "csrc/ops.cpp", "csrc/sampler.cpp"]
    # the C++ standard comes from torch (C++20 for 2.14); no fused multiply-add unless written out, so that the
    # draw rule (csrc/draw.h) gives the same bits as its Python mirror and the CUDA build (--fmad=false)
    cxx = ["-O3", "-fopenmp", "-ffp-contract=off"]
    if with_cuda:
        if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
            os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0;9.0"
        sources += ["csrc/cuda/sampler_cuda.cpp", "csrc/cuda/sampler_kernels.cu"]
        ext = CUDAExtension("pixelcnn._C", sources, define_macros=[("PIXELCNN_WITH_CUDA", None)],
                            extra_compile_args={"cxx": cxx, "nvcc": ["-O3", "--fmad=false"]},
                            extra_link_args=["-fopenmp"])
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
    entry_points={"console_scripts": [
        "pixelcnn-train=pixelcnn.train:main",
        "pixelcnn-sample=pixelcnn.sample:main",
        "pixelcnn-export=export.__main__:main",
    ]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
