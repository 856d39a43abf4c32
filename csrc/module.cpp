// Python module pixelcnn._C: importing it registers the torch.ops.pixelcnn.* ops (see sampler.cpp).
#include <Python.h>

namespace {

PyObject* cuda_built(PyObject*, PyObject*) {
#ifdef PIXELCNN_WITH_CUDA
  Py_RETURN_TRUE;
#else
  Py_RETURN_FALSE;
#endif
}

PyMethodDef methods[] = {
    {"cuda_built", cuda_built, METH_NOARGS, "Whether the CUDA kernels were compiled into this extension."},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", "PixelCNN cached-sampler ops (torch.ops.pixelcnn.*)", -1,
                      methods};

}  // namespace

PyMODINIT_FUNC PyInit__C() { return PyModule_Create(&module); }
