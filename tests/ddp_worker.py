"""Worker for the DDP gradient test: one process of a gloo group computes one step on its shard."""

import os

import torch


def first_step_grads(rank, world_size, port, out_dir, global_batch, arch="pixelcnn"):
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank)
    )
    import torch.distributed as dist

    from pixelcnn.architectures import build_model
    from pixelcnn.config import Config, ModelConfig
    from pixelcnn.data import load_data, make_loader
    from pixelcnn.train import loss_fn, setup_distributed

    torch.set_num_threads(1)
    ddp = setup_distributed("cpu")
    cfg = Config(
        model=ModelConfig(arch=arch, channels=1, image_size=(8, 8), num_classes=10, hidden=8, blocks=1, kernel_size=3)
    )
    data = load_data(cfg)
    torch.manual_seed(0)
    model = build_model(cfg.model)
    with torch.no_grad():
        model.head_out.weight.normal_(0, 0.05)
    net = torch.nn.parallel.DistributedDataParallel(model) if world_size > 1 else model
    loader = make_loader(
        data.train_images,
        data.train_labels,
        global_batch // world_size,
        True,
        seed=5,
        rank=ddp.rank,
        world_size=world_size,
    )
    loader.sampler.set_epoch(0)
    images, labels = next(iter(loader))
    loss_fn(net, images, labels, amp=False).backward()
    if ddp.rank == 0:
        torch.save({n: p.grad for n, p in model.named_parameters()}, os.path.join(out_dir, f"grads{world_size}.pt"))
    if world_size > 1:
        dist.barrier()  # rank 1 must not tear gloo down while rank 0 is still saving (seen: SIGABRT on exit)
        dist.destroy_process_group()
