# comments, semicolons and continuation lines are all layout
recipe   layout ;  let a = 1 ;let b=2.5


pipeline {   # the main one
  fold-constants max-bytes=$a ; eliminate-identity
  fuse-activations conv-relu,
     conv-clip   # continues after a comma
  eliminate-identity
    on op(Identity)
    | op(Dropout)
}
