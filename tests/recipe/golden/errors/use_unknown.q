pipeline cleanup { fold-constants }
pipeline {
  use claenup
}
