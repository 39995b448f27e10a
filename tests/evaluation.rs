//! The test loss and accuracy a run records (metrics.csv's test_loss, test_acc: every table's
//! "best test error" comes from them), against one pass over the whole test set written here
//! from the definitions: the epoch's weights (best.safetensors), BN in eval mode, the raw test
//! images normalized by the statistics summary.json records, the mean cross-entropy over every
//! image and the fraction whose arg-max is the label. The run evaluates in batches of 24 of
//! 100 images (the last one of 4), so averaging per batch instead of per image, BN statistics
//! of the batch instead of the running ones, or a batch dropped fails here.
use deepres::data;
use deepres::model::resnet::ResNet;
use deepres::train::{self, metrics, read_summary};
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

mod common;
use common::{best_file_epoch, serial, tiny_run};

#[test]
fn recorded_test_loss_and_accuracy_are_one_eval_mode_pass_over_every_image() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tiny_run::config(
        tmp.path(),
        "eval",
        &[
            "data.synthetic_train=256",
            "data.synthetic_test=100",
            "train.batch_size=32",
            "train.eval_batch_size=24",
            "train.epochs=2",
            "train.optimizer.lr=0.1",
        ],
    );
    {
        let _g = serial();
        train::run(&cfg, &tiny_run::quiet()).unwrap();
    }
    let dir = cfg.run_dir();
    let summary = read_summary(&dir).unwrap();
    let epoch = best_file_epoch(&dir).unwrap();
    let row = metrics::read(&dir.join("metrics.csv")).unwrap()[epoch as usize - 1].clone();
    assert_eq!(row.epoch, epoch);

    // The epoch's model: the architecture of the config, the weights and BN statistics of
    // best.safetensors.
    let mut vs = VarStore::new(Device::Cpu);
    let data = data::load(&cfg.data.spec()).unwrap();
    let net = ResNet::new(&vs.root(), &cfg.model, data.channels, data.num_classes).unwrap();
    vs.load(dir.join("best.safetensors")).unwrap();

    // The raw test set, normalized by the recorded statistics.
    let c = data.channels;
    let stat = |v: &[f64]| {
        Tensor::from_slice(v)
            .to_kind(Kind::Float)
            .view([1, c, 1, 1])
    };
    let x = (data.test.images.to_kind(Kind::Float) / 255.0 - stat(&summary.input_mean))
        / stat(&summary.input_std);
    let y = &data.test.labels;
    assert_eq!(y.size(), [100]);
    let logits = tch::no_grad(|| net.forward_t(&x, false)).to_kind(Kind::Double);
    let n = 100.0;
    // −log softmax of the label, averaged over the images.
    let nll = -(logits
        .log_softmax(-1, Kind::Double)
        .gather(1, &y.unsqueeze(1), false));
    let loss = nll.sum(Kind::Double).double_value(&[]) / n;
    let right = logits.argmax(-1, false).eq_tensor(y);
    let acc = right.sum(Kind::Double).double_value(&[]) / n;
    eprintln!(
        "epoch {epoch}: recorded loss {} acc {}; one pass {loss} {acc}",
        row.test_loss, row.test_acc
    );
    assert!(
        (row.test_loss / loss - 1.0).abs() < 1e-5,
        "test_loss {} vs {loss}",
        row.test_loss
    );
    assert_eq!(row.test_acc, acc);
    // Not a vacuous match: the model is past chance and not perfect, so a miscount shows.
    assert!(acc > 0.0 && acc < 1.0, "{acc}");
}
