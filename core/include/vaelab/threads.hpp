#pragma once

namespace vaelab {

/// Sets OpenBLAS's thread count when OpenBLAS is the BLAS in the process (found at run time, so
/// nothing links against it). Returns false when it is not there.
bool set_blas_threads(int threads);

/// OpenBLAS's thread count, or 0 when OpenBLAS is not in the process.
int blas_threads();

/// Logical CPUs this process may run on (its affinity mask).
int available_cpus();

}  // namespace vaelab
