"""Volume-rendering pieces shared by the field backends (NeRF, SDF): rays, sampling, occupancy, compositing,
dense voxel fields and the training loop that fits them to a calibrated capture. Plain torch, no Django."""
