"""A hook that checkpoints and stops training after a given epoch, to test resuming."""

from owlearn.train.loop import Hook


class Interrupt(Exception):
    pass


class StopAfter(Hook):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, trainer, epoch, logs):
        if epoch == self.epoch:
            trainer.save_checkpoint(epoch)
            raise Interrupt
