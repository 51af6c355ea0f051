pipeline {
  fold-constants on op(Conv)
}
