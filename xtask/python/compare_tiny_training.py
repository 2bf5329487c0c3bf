"""The same one-block ViT and schedule as vit-train's tiny test recipe (no augmentation, no
dropout, no label smoothing), trained by timm + PyTorch on the 800/200 Fashion-MNIST test
fixture, to compare learning speed:
    xtask/.venv/bin/python xtask/python/compare_tiny_training.py token|avg
against
    vit-train --config <tests' recipe> --set train.epochs=4 --set data.augment.mixup_alpha=0.0
      --set model.drop_rate=0.0 --set model.drop_path_rate=0.0 --set train.label_smoothing=0.0
      --set data.augment.hflip=false --set data.augment.crop_padding=0 [--set 'model.pool="mean"']
"""
import gzip, struct, math, torch, torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer
torch.manual_seed(0); torch.set_num_threads(2)
root='crates/vit-train/tests/fixtures/fashion-mnist-1k/'
def load(split):
    im=gzip.open(root+f'{split}-images-idx3-ubyte.gz').read(); lb=gzip.open(root+f'{split}-labels-idx1-ubyte.gz').read()
    n=struct.unpack('>I',im[4:8])[0]
    x=torch.frombuffer(bytearray(im[16:]),dtype=torch.uint8).float().view(n,1,28,28)/255.
    return (x-0.286)/0.353, torch.frombuffer(bytearray(lb[8:]),dtype=torch.uint8).long()
xt,yt=load('train'); xv,yv=load('t10k')
import sys
pool=sys.argv[1] if len(sys.argv)>1 else 'token'
m=VisionTransformer(img_size=28,patch_size=7,in_chans=1,num_classes=10,embed_dim=32,depth=1,num_heads=2,mlp_ratio=2.0,global_pool=pool, weight_init='jax')
decay=[p for n,p in m.named_parameters() if p.ndim>1 and n not in('cls_token','pos_embed')]
nod=[p for n,p in m.named_parameters() if not(p.ndim>1 and n not in('cls_token','pos_embed'))]
opt=torch.optim.AdamW([{'params':decay,'weight_decay':0.05},{'params':nod,'weight_decay':0.}],lr=3e-3)
total=4*25; step=0
for ep in range(4):
    perm=torch.randperm(800)
    m.train()
    for i in range(25):
        idx=perm[i*32:(i+1)*32]
        lr=3e-3*(step+1)/5 if step<5 else 0.5*3e-3*(1+math.cos(math.pi*(step-5)/(total-5)))
        for g in opt.param_groups: g['lr']=lr
        loss=F.cross_entropy(m(xt[idx]),yt[idx]); opt.zero_grad(); loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(),1.0); opt.step(); step+=1
    m.eval()
    with torch.no_grad(): acc=(m(xv).argmax(1)==yv).float().mean().item()
    print(ep+1, round(loss.item(),3), acc)
