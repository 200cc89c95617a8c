/* Link-time stand-ins for the C entry points that TensorRT's Python bindings (tensorrt_bindings/tensorrt.so)
 * import from libnvinfer, libnvonnxparser, libnvinfer_plugin and, on 8.6, libnvparsers (`nm -D
 * --undefined-only` lists them). They exist so that `import tensorrt_bindings` succeeds on a CPU machine
 * and the real classes, enums, properties and signatures of that TensorRT release can be read.
 * Every factory returns NULL and nothing here computes anything: these stubs can never build, run or
 * time an engine, and fertrt's tests use them only for API checks. */
#include <stddef.h>

void *createInferBuilder_INTERNAL(void *logger, int version) { (void)logger; (void)version; return NULL; }
void *createInferRuntime_INTERNAL(void *logger, int version) { (void)logger; (void)version; return NULL; }
void *createInferRefitter_INTERNAL(void *engine, void *logger, int version) { (void)engine; (void)logger; (void)version; return NULL; }
void *getPluginRegistry(void) { return NULL; }
void *getBuilderPluginRegistry(int capability) { (void)capability; return NULL; }
/* reports success, as a working install does; the stand-ins check that fertrt calls it before parse/deserialize */
int initLibNvInferPlugins(void *logger, const char *ns) { (void)logger; (void)ns; return 1; }
void *createNvOnnxParser_INTERNAL(void *network, void *logger, int version) { (void)network; (void)logger; (void)version; return NULL; }
void *createNvOnnxParserRefitter_INTERNAL(void *refitter, void *logger, int version) { (void)refitter; (void)logger; (void)version; return NULL; }
int getNvOnnxParserVersion(void) { return 0; }

/* TensorRT 8.6 only: the UFF and Caffe parsers of libnvparsers (C++ names, spelled mangled). */
void *_ZN11nvuffparser15createUffParserEv(void) { return NULL; }
void _ZN11nvuffparser8FieldMapC1EPKcPKvNS_9FieldTypeEi(void *self, const char *name, const void *data, int type, int length)
{ (void)self; (void)name; (void)data; (void)type; (void)length; }
void *_ZN14nvcaffeparser117createCaffeParserEv(void) { return NULL; }
void _ZN14nvcaffeparser123shutdownProtobufLibraryEv(void) {}
