# The CUDA backend (src/kernels/cuda/*.cu), on by default when a CUDA compiler
# is found. Without it the library builds and runs on the CPU alone, and
# src/kernels/cuda/cuda_stub.cpp answers "built without CUDA".
#
# Targets: ckv_cuda (static; the .cu files, compiled for sm_90a), linked into
# ckv, which then carries CKV_HAVE_CUDA to everything that uses it.
include(CheckLanguage)
if(NOT DEFINED CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX} AND EXISTS /usr/local/cuda/bin/nvcc)
  set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
endif()
check_language(CUDA)
if(CMAKE_CUDA_COMPILER)
  set(CKV_CUDA_DEFAULT ON)
else()
  set(CKV_CUDA_DEFAULT OFF)
endif()
option(CKV_CUDA "Build the CUDA backend (needs nvcc; the GPU is only needed to run it)" ${CKV_CUDA_DEFAULT})

if(CKV_CUDA)
  if(NOT CMAKE_CUDA_COMPILER)
    message(FATAL_ERROR "CKV_CUDA is ON but no CUDA compiler was found (set CMAKE_CUDA_COMPILER)")
  endif()
  # 90a: Hopper (H100/H200) with its own instructions. Override with
  # -DCMAKE_CUDA_ARCHITECTURES=... for other GPUs (the kernels need sm_80+).
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES 90a)
  endif()
  enable_language(CUDA)
  find_package(CUDAToolkit REQUIRED)
  # CMake before 3.26 knows no C++20 flag for nvcc (which has had it since 12.0).
  if(NOT CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
    set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
    set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
  endif()
  message(STATUS "CUDA backend: nvcc ${CMAKE_CUDA_COMPILER_VERSION}, architectures ${CMAKE_CUDA_ARCHITECTURES}")

  file(GLOB CKV_CUDA_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/kernels/cuda/*.cu)
  add_library(ckv_cuda STATIC ${CKV_CUDA_SOURCES})
  # The directory's flags are g++'s (-Wall, -march=...): nvcc gets its own,
  # with the same strictness on the host side and on the device side.
  set_property(TARGET ckv_cuda PROPERTY COMPILE_OPTIONS "")
  target_compile_options(ckv_cuda PRIVATE
    $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra,-Werror,-Wno-unused-parameter,-march=x86-64-v3
      -Werror=all-warnings --expt-relaxed-constexpr -lineinfo>)
  if(CKV_CUDA_RESOURCE_REPORT)
    target_compile_options(ckv_cuda PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-Xptxas=-v>)
  endif()
  set_target_properties(ckv_cuda PROPERTIES CUDA_STANDARD 20 CUDA_STANDARD_REQUIRED ON CUDA_EXTENSIONS OFF)
  target_compile_definitions(ckv_cuda PRIVATE CKV_HAVE_CUDA)
  # ckv_cuda uses the library (dequantize_row, Error, ...) and ckv uses it:
  # mutually dependent static libraries, which CMake links in a loop.
  target_link_libraries(ckv_cuda PUBLIC CUDA::cublasLt CUDA::cudart_static PRIVATE ckv)
  target_link_libraries(ckv PUBLIC ckv_cuda)
  target_compile_definitions(ckv PUBLIC CKV_HAVE_CUDA)

  # NCCL for tensor parallelism (--tp on CUDA devices), when its header is
  # found: kernels/cuda/nccl_comm.cu opens libnccl.so.2 at run time (dlopen),
  # so the build runs without the library until --tp asks for it; the library
  # found here is the fallback path. Off (--tp then works on the CPU only)
  # without the header, or with -DCKV_NCCL=OFF.
  option(CKV_NCCL "NCCL tensor parallelism on CUDA devices (when nccl.h is found)" ON)
  if(CKV_NCCL)
    find_path(CKV_NCCL_INCLUDE nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} /usr/local/cuda/include ENV NCCL_HOME
              PATH_SUFFIXES include)
    find_library(CKV_NCCL_LIBRARY NAMES nccl libnccl.so.2
                 HINTS ${CUDAToolkit_LIBRARY_DIR} /usr/local/cuda/lib /usr/local/cuda/lib64 ENV NCCL_HOME
                 PATH_SUFFIXES lib lib64)
  endif()
  if(CKV_NCCL AND CKV_NCCL_INCLUDE)
    message(STATUS "NCCL: ${CKV_NCCL_INCLUDE}/nccl.h, library ${CKV_NCCL_LIBRARY} (opened at run time)")
    target_include_directories(ckv_cuda PRIVATE ${CKV_NCCL_INCLUDE})
    target_compile_definitions(ckv_cuda PRIVATE CKV_HAVE_NCCL)
    if(CKV_NCCL_LIBRARY)
      get_filename_component(CKV_NCCL_REAL ${CKV_NCCL_LIBRARY} REALPATH)
      target_compile_definitions(ckv_cuda PRIVATE CKV_NCCL_LIB="${CKV_NCCL_REAL}")
    endif()
    target_link_libraries(ckv_cuda PRIVATE ${CMAKE_DL_LIBS})
  else()
    message(STATUS "NCCL: not found (tensor parallelism on the CPU only)")
  endif()
endif()

# GPU benchmarks (bench/bench_cuda.cpp): the engine on random weights of a
# real shape and the kernels alone, against measured ceilings (scripts/gpu.sh).
if(CKV_CUDA)
  add_executable(bench_cuda ${CMAKE_SOURCE_DIR}/bench/bench_cuda.cpp)
  target_link_libraries(bench_cuda PRIVATE ckv)
  # All-reduce timing of tensor parallelism against the bus bandwidth (scripts/gpu.sh, stage tp).
  add_executable(bench_tp ${CMAKE_SOURCE_DIR}/bench/bench_tp.cpp)
  target_link_libraries(bench_tp PRIVATE ckv)
endif()
