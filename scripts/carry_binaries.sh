# shellcheck shell=bash
# Sourced by gpu_carry.sh and eval_carry.sh: carry_binaries BUILD DST PROGRAM...
# puts the programs, stripped, in DST/bin and the shared libraries they need
# beyond glibc/libstdc++/CUDA in DST/lib (the GPU machine's image has those).
carry_binaries() {
  local build=$1 dst=$2
  shift 2
  mkdir -p "$dst/bin" "$dst/lib"
  for b in "$@"; do strip --strip-debug -o "$dst/bin/$b" "$build/$b"; done
  for lib in $(for b in "$@"; do ldd "$build/$b"; done | awk '/=>/ {print $3}' | sort -u); do
    case $(basename "$lib") in
      libc.so* | libm.so* | libstdc++* | libgcc_s* | ld-linux* | libdl* | libpthread* | librt* | libcublas* | libcudart* | libcuda.so* | libnccl*) ;;  # NCCL: the GPU machine's own
      *) cp -L "$lib" "$dst/lib/" ;;
    esac
  done
}
