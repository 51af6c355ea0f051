recipe schemes
scheme w8 = int8 symmetric per_channel
scheme w8r = int8 symmetric per_channel(axis = 1) reduce_range
scheme a8 = uint8 asymmetric per_tensor observer percentile(99.99)
scheme a8e = uint8 observer entropy(bins = 4096)
scheme a8m = uint8 asymmetric observer moving_average(0.1)
scheme a16 = int16 symmetric observer mse
scheme keep = float

pipeline {
  test-observe weights = w8, activations = a8
  test-observe activations = a8e, samples = 16
}
