// The static dimensions alone are over the limit, whatever the dynamic one is.
func.func @dynamic_rows(%a: tensor<?x1099511627776x1099511627776xf32>) -> tensor<?x1099511627776x1099511627776xf32> {
  return %a : tensor<?x1099511627776x1099511627776xf32>
}
