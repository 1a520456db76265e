// MPI_CHECK: throw moe::Error with file:line and MPI's own message when an MPI call fails.
#pragma once

#include <mpi.h>

#include "runtime/error.hpp"

namespace moe::detail {
inline std::string mpi_error_string(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  return std::string(text, length);
}
}  // namespace moe::detail

#define MPI_CHECK(call)                                                 \
  do {                                                                  \
    const int moe_mpi_rc = (call);                                      \
    if (moe_mpi_rc != MPI_SUCCESS)                                      \
      ::moe::detail::fail(__FILE__, __LINE__, #call, ": ",              \
                          ::moe::detail::mpi_error_string(moe_mpi_rc)); \
  } while (0)
