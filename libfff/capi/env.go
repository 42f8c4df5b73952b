package main

/*
#include <stdlib.h>
*/
import "C"

import (
	"os"
	"unsafe"

	"fff/libfff"
)

// syncTLSEnv copies FFF_CA, FFF_CERT and FFF_KEY from the C environment
// into Go's. The Go runtime copied the environment when the library was
// loaded, so without this a program that sets them later (Python's
// os.environ, as it may FFF_CLUSTER and FFF_TOKEN, which the Python
// package passes itself) would not be heard.
func syncTLSEnv() {
	for _, k := range []string{libfff.EnvCA, libfff.EnvCert, libfff.EnvKey} {
		ck := C.CString(k)
		v := C.getenv(ck)
		C.free(unsafe.Pointer(ck))
		if v == nil {
			os.Unsetenv(k)
		} else if s := C.GoString(v); s != os.Getenv(k) {
			os.Setenv(k, s)
		}
	}
}
