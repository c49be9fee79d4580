// MLIR 22's parser crashes (SIGSEGV) on a dense array of index elements.
func.func @f() attributes {a = array<index: 1, 2>} {
  return
}
