# Normal build: each fuzz target linked with replay_main.cpp instead of
# libFuzzer, and a ctest that runs it over fuzz/regressions/<target>/.
file(GLOB CKV_FUZZ_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/fuzz/fuzz_*.cpp)
foreach(src ${CKV_FUZZ_SOURCES})
  get_filename_component(name ${src} NAME_WE)
  add_executable(${name}_replay ${src} ${CMAKE_SOURCE_DIR}/fuzz/replay_main.cpp)
  target_link_libraries(${name}_replay PRIVATE ckv)
  target_compile_definitions(${name}_replay PRIVATE
    CKV_SHARED_DIR="${CMAKE_SOURCE_DIR}/../shared" CKV_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
  add_test(NAME ${name}_replay COMMAND ${name}_replay ${CMAKE_SOURCE_DIR}/fuzz/regressions/${name}
           WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
endforeach()
