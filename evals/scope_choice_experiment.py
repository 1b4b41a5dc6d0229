"""Which fact to use when several pass the scope gate: the best key similarity, or the LLM's constrained choice?

KnowEdit WikiData_counterfact TRAIN: question = the Subject_Aliasing prompt of a record (a paraphrase with an
alias of the subject); memory = every record's fact (prompt + target_new); candidates = top-5 by fact
similarity; cases counted where the right fact is retrieved and at least two candidates pass the gate
(key cosine >= 0.59), shuffled. Run: python evals/scope_choice_experiment.py
"""
import json, random, numpy as np
from scr.llm.hf import TransformersBackend
from scr.llm import as_chat
from scr import prompts
from scr.kb.embed import Embedder
random.seed(0)
d=json.load(open('/work/shared/data/knowedit/wiki_counterfact_train.json'))
facts=[r['prompt']+' '+ (r['target_new'] if isinstance(r['target_new'],str) else r['target_new'][0])+'.' for r in d]
keys=[r['prompt'] for r in d]
qs=[]
for i,r in enumerate(d):
    sa=(r.get('portability') or {}).get('Subject_Aliasing') or []
    if sa: qs.append((sa[0]['prompt'],i))
qs=qs[:150]
e=Embedder('all-minilm-l6-v2')
F=e.embed(facts); K=e.embed(keys); Q=e.embed([q for q,_ in qs])
b=TransformersBackend.load("smollm2-135m-instruct")
res={'keyargmax':0,'raw':0,'chat':0,'n':0,'gold_in_top5':0, 'gold_top_key':0}
for (q,gold),qv in zip(qs,Q):
    top=list(np.argsort(-F@qv)[:5])
    if gold not in top: continue
    res['gold_in_top5']+=1
    ks=K[top]@qv
    elig=[t for t,s in zip(top,ks) if s>=0.59]
    if len(elig)<2: continue
    res['n']+=1
    random.shuffle(elig)
    best=max(elig,key=lambda t: K[t]@qv)
    res['keyargmax']+= best==gold
    fl=[facts[t] for t in elig]
    opts=[str(i) for i in range(1,len(fl)+1)]
    p=b.choose([f"Facts:\n{prompts.numbered(fl)}\n\nQuestion: {q}\nThe fact that answers the question is number"],[[" "+o for o in opts]])[0]
    res['raw']+= elig[p]==gold
    p=b.choose([as_chat(prompts.choose_fact(fl,q,False))],[opts])[0]
    res['chat']+= elig[p]==gold
print(res)
