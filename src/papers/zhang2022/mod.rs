//! Zhang, Yu, Yi, Chen, Liu, "Stabilize Deep ResNet with a Sharp Scaling Factor τ" (Machine
//! Learning 2022, arXiv:1903.07120). Tables Z1, Z2 and Figure Z3 are sweeps of the general
//! machinery (experiments/zhang2022/*.yaml); what is the paper's own is the stability probe at
//! initialization ([`probe`]). See docs/zhang2022.md.
pub mod probe;
