"""The resolved IR: typed records of a checked recipe (`nodes`, `terms`), the pass that builds
them from the checked graph (`build`), the shape pass (`shapes`) and the verifier (`verify`)."""
