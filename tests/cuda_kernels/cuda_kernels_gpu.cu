// The kernel tests of this folder compiled by nvcc: on a GPU they run the real kernels against the
// CPU backend; everywhere they prove every kernel builds for sm_80 and sm_90 without warnings.
// One #include per kernel family, as in CMakeLists.txt.
