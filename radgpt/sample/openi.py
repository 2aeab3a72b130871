"""NLM Open-i (IU X-ray) in the sample: eCitation XML documents in NLMCXR_reports.tgz.

    openi_document(num, {"FINDINGS": ..., "IMPRESSION": ...}, major, minor, images)
    write_openi(dir, n, seed, bad)          # NLMCXR_reports.tgz (ecgen-radiology/<num>.xml)

The reader is radgpt.ingest.sources.openi.
"""

from __future__ import annotations

import gzip
import io
import random
import tarfile
from collections.abc import Iterable
from pathlib import Path
from xml.sax.saxutils import escape

from radgpt.sample.base import flat, rng, stats
from radgpt.sample.text import Case, draw_case, draw_cases

EPOCH = 1372636800  # 2013-07-01 UTC: fixed mtime of tar members (gzip headers carry mtime 0)


def _abstract(label: str, text: str | None) -> str:
    if not text:
        return f'            <AbstractText Label="{label}"/>'
    return f'            <AbstractText Label="{label}">{escape(text)}</AbstractText>'


def _image(iid: str, k: int, view: str) -> str:
    return (
        f'   <parentImage id="{iid}">\n      <figureId>F{k}</figureId>\n'
        f'      <caption>Xray Chest {view}</caption>\n      <panel type="single">\n'
        f"         <url>/hadoop/storage/radiology/extract/{iid}.png</url>\n"
        "         <imgModality>7</imgModality>\n      </panel>\n   </parentImage>"
    )


def openi_document(
    num: int,
    sections: dict[str, str | None],
    major: Iterable[str] = (),
    minor: Iterable[str] = (),
    images: Iterable[tuple[str, str]] = (),
) -> str:
    """One ecgen-radiology/<num>.xml in the NLM Open-i eCitation layout.

    sections: AbstractText label -> text (None or "" renders an empty element); major/minor:
    MeSH terms (repeats dropped); images: (parentImage id, view) per figure.
    """
    abstract = "\n".join(_abstract(label, text) for label, text in sections.items())
    mesh = "".join(f"\n      <major>{escape(t)}</major>" for t in dict.fromkeys(major))
    mesh += "".join(f"\n      <minor>{escape(t)}</minor>" for t in dict.fromkeys(minor))
    imgs = [_image(iid, k, view) for k, (iid, view) in enumerate(images, 1)]
    return f"""<?xml version="1.0" encoding="utf-8"?>
<eCitation>
   <meta type="rr"/>
   <uId id="CXR{num}"/>
   <pmcId id="{num}"/>
   <docSource>CXR</docSource>
   <IUXRId id="{num}"/>
   <licenseType>open-access</licenseType>
   <licenseURL>http://creativecommons.org/licenses/by-nc-nd/4.0/</licenseURL>
   <ccLicense>byncnd</ccLicense>
   <articleURL/>
   <articleDate>2013-08-01</articleDate>
   <articleType>XR</articleType>
   <publisher>Indiana University</publisher>
   <title>Indiana University Chest X-ray Collection</title>
   <note>The data are drawn from multiple hospital systems.</note>
   <specialty>pulmonary diseases</specialty>
   <subset>CXR</subset>
   <MedlineCitation Owner="Indiana University" Status="supplied by publisher">
      <Article PubModel="Electronic">
         <Journal>
            <JournalIssue>
               <PubDate>
                  <Year>2013</Year>
                  <Month>08</Month>
                  <Day>01</Day>
               </PubDate>
            </JournalIssue>
         </Journal>
         <ArticleTitle>Indiana University Chest X-ray Collection</ArticleTitle>
         <Abstract>
{abstract}
         </Abstract>
         <Affiliation>Indiana University</Affiliation>
         <Language>eng</Language>
         <PublicationTypeList>
            <PublicationType>Radiology Report</PublicationType>
         </PublicationTypeList>
      </Article>
      <EntrezDate>2013/08/01</EntrezDate>
   </MedlineCitation>
   <MeSH>{mesh}
   </MeSH>
{chr(10).join(imgs)}
</eCitation>
"""


def openi_xml(c: Case, num: int, r: random.Random) -> str:
    """`openi_document` of a case: MeSH from its positives (acute ones major), 1-2 images."""
    acute = [f.mesh for f in c.positives if f.acute] or [f.mesh for f in c.positives]
    minor = [f.mesh for f in c.positives if f.mesh not in acute]
    images = []
    for k, view in enumerate(("PA", "Lateral")[: r.choice((1, 2, 2))], 1):
        iid = f"CXR{num}_{k}_IM-{r.randint(0, 2999):04d}-{r.randint(1001, 4004):04d}"
        images.append((iid, view))
    sections = {
        "COMPARISON": c.comparison,
        "INDICATION": c.indication,
        "FINDINGS": c.findings,
        "IMPRESSION": flat(c.impression),
    }
    return openi_document(num, sections, acute or ["normal"], minor, images)


def tgz(members: Iterable[tuple[str, bytes]], dirs: tuple[str, ...] = ()) -> bytes:
    """A .tar.gz with fixed mtimes/owners: byte-identical for identical members."""
    buf = io.BytesIO()
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar,
    ):
        for name in dirs:
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, EPOCH
            tar.addfile(ti)
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, EPOCH
            tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def write_openi(d: Path, n: int, seed: int, bad: bool) -> dict:
    r = rng(seed, "openi")
    cases = draw_cases(r, n, mark="XXXX")
    members, num = [], 0
    for j, c in enumerate(cases):
        num += 1 + (r.random() < 0.15)  # the public numbering has gaps
        members.append((f"ecgen-radiology/{num}.xml", openi_xml(c, num, r).encode()))
        if bad and j == n // 2:  # bad: a member cut off mid-element
            num += 1
            xml = openi_xml(draw_case(r, mark="XXXX"), num, r).encode()
            members.append((f"ecgen-radiology/{num}.xml", xml[: int(len(xml) * 0.6)]))
    d.mkdir(parents=True, exist_ok=True)
    (d / "NLMCXR_reports.tgz").write_bytes(tgz(members, ("ecgen-radiology",)))
    return {**stats(cases), "members": len(members), "bad": {"bad_xml": int(bad)}}
