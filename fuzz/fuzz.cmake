# CKV_FUZZ build (clang): one libFuzzer program per fuzz/fuzz_*.cpp, and
# fuzz_seeds, which writes their seed corpora from ../shared and models/.
file(GLOB CKV_FUZZ_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/fuzz/fuzz_*.cpp)
set(CKV_FUZZ_DEFS CKV_SHARED_DIR="${CMAKE_SOURCE_DIR}/../shared" CKV_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
foreach(src ${CKV_FUZZ_SOURCES})
  get_filename_component(name ${src} NAME_WE)
  add_executable(${name} ${src})
  target_link_libraries(${name} PRIVATE ckv)
  target_link_options(${name} PRIVATE -fsanitize=fuzzer)
  target_compile_definitions(${name} PRIVATE ${CKV_FUZZ_DEFS})
endforeach()
add_executable(fuzz_seeds ${CMAKE_SOURCE_DIR}/fuzz/seeds.cpp)
target_link_libraries(fuzz_seeds PRIVATE ckv)
target_compile_definitions(fuzz_seeds PRIVATE ${CKV_FUZZ_DEFS})
