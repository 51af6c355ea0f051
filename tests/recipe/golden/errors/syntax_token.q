pipeline {
  fold-constants ]
}
