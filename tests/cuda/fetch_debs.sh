#!/usr/bin/env bash
# Downloads, on a Debian 12 machine with apt, the .deb files that tests/cuda/run_on_gpu.sh unpacks
# on a GPU machine lacking them: this project's libraries and Open MPI with the libraries it loads.
# Nothing is installed here. run_on_gpu.sh unpacks only the packages whose shared libraries the
# GPU machine does not already have, so the base libraries here (libc, libstdc++, …) are not
# fetched at all: an older copy ahead of the machine's own would break its programs.
# DIR/project holds this project's libraries (all unpacked there), DIR/openmpi Open MPI and the
# libraries it loads (unpacked where the machine has no MPI, each only where the machine lacks it).
# Usage: tests/cuda/fetch_debs.sh [DIR]   (default .debs, git-ignored; 36 packages, 31 MB)
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${1:-.debs}
project=(libopenblas-dev libopenblas-pthread-dev libopenblas0-pthread libopenblas0 libgfortran5
  libgtest-dev libbenchmark-dev libbenchmark1debian nlohmann-json3-dev libcereal-dev
  libsentencepiece-dev libsentencepiece0 libprotobuf-lite32 libboost-program-options1.74-dev
  libboost-program-options1.74.0 libboost1.74-dev libdnnl-dev libdnnl2)
# Open MPI 4.1 (mpirun, the headers and wrappers for CMake's FindMPI, the help texts) and what its
# libraries and components link (ldd of libmpi, orted and every MCA component, by package).
openmpi=(openmpi-bin openmpi-common libopenmpi3 libopenmpi-dev libpmix2 libhwloc15
  libevent-core-2.1-7 libevent-pthreads-2.1-7 libfabric1 libibverbs1 ibverbs-providers librdmacm1
  libpsm2-2 libpsm-infinipath1 libucx0 libnl-3-200 libnl-route-3-200 libnuma1 libmunge2
  libatomic1)
rm -rf "$dir/project" "$dir/openmpi"
mkdir -p "$dir/project" "$dir/openmpi"
(cd "$dir/project" && apt-get download "${project[@]}")
(cd "$dir/openmpi" && apt-get download "${openmpi[@]}")
echo "fetched $(ls "$dir"/*/*.deb | wc -l) packages, $(du -sh "$dir" | cut -f1), into $dir"
