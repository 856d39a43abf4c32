// Python module pixelcnn._C: importing it registers the torch.ops.pixelcnn.* ops (schema in ops.cpp) and reports
// which CPU vector path the C++ sampler takes (cpu_isa.h). Whether CUDA kernels are registered is the
// dispatcher's to say (pixelcnn/extension.py asks it).
#include <Python.h>

#include <string>

#include "cpu_isa.h"

namespace {

PyObject* cpu_isa(PyObject*, PyObject*) {
  pixelcnn::cpu::Isa isa;
  std::string error;
  if (!pixelcnn::cpu::selected_isa(&isa, &error)) {
    PyErr_SetString(PyExc_ValueError, error.c_str());
    return nullptr;
  }
  return PyUnicode_FromString(pixelcnn::cpu::isa_name(isa));
}

PyObject* cpu_isas(PyObject*, PyObject*) {
  const auto isas = pixelcnn::cpu::available_isas();
  PyObject* out = PyTuple_New(static_cast<Py_ssize_t>(isas.size()));
  if (out == nullptr) return nullptr;
  for (size_t i = 0; i < isas.size(); ++i) {
    PyTuple_SET_ITEM(out, static_cast<Py_ssize_t>(i), PyUnicode_FromString(pixelcnn::cpu::isa_name(isas[i])));
  }
  return out;
}

PyMethodDef methods[] = {
    {"cpu_isa", cpu_isa, METH_NOARGS,
     "The vector ISA cached_sample uses on CPU now: PIXELCNN_CPU_ISA if set (ValueError if this CPU cannot run "
     "it), else the widest this CPU runs."},
    {"cpu_isas", cpu_isas, METH_NOARGS, "The vector ISAs this build and CPU run, scalar first."},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", "PixelCNN cached-sampler ops (torch.ops.pixelcnn.*)", -1, methods};

}  // namespace

PyMODINIT_FUNC PyInit__C() { return PyModule_Create(&module); }
