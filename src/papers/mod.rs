//! What is specific to each of the three papers deepres reproduces (the general machinery is
//! in `data`, `model`, `train`, `sweep` and `report`):
//! - [`zhang2022`]: Zhang, Yu, Yi, Chen, Liu, "Stabilize Deep ResNet with a Sharp Scaling Factor
//!   τ" (Machine Learning 2022, arXiv:1903.07120): the stability probe; its tables and figure
//!   are sweeps (experiments/zhang2022/, docs/zhang2022.md).
//! - [`marion2022`]: Marion, Fermanian, Biau, Vert, "Scaling ResNets in the Large-depth Regime"
//!   (arXiv:2206.06929), docs/marion2022.md.
//! - [`chizat2025`]: Chizat, "The Hidden Width of Deep ResNets: Tight Error Bounds and Phase
//!   Diagram" (2025), docs/chizat2025.md.
//!
//! [`figure`] loads a paper's figure file (`experiments/<paper>/figN.yaml`) at a scale.
pub mod chizat2025;
pub mod figure;
pub mod marion2022;
pub mod zhang2022;
