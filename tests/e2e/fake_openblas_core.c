/* Preloaded by test_blas_cli.cpp in place of OpenBLAS's core query: reports the core named by
   OPENBLAS_CORETYPE when set (as OpenBLAS does after a forced choice), else FAKE_OPENBLAS_CORE. */
#include <stdlib.h>

char* openblas_get_corename(void) {
  char* forced = getenv("OPENBLAS_CORETYPE");
  if (forced != NULL) return forced;
  char* fake = getenv("FAKE_OPENBLAS_CORE");
  return fake != NULL ? fake : (char*)"Prescott";
}
