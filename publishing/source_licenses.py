"""Each upstream source's license, as its own repository states it: one table for the card's YAML, its
license table, `LICENSE.md` and its citations.

Its own module so that the card's section builders (`publishing.card_sections`) and the card itself
(`publishing.card`) both read it without importing each other.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SourceLicense:
    name: str
    upstream: str  # the upstream's repo id (Hub) or owner/name (GitHub)
    url: str
    license_id: str  # Hub license identifier
    license: str  # human-readable
    license_link: str  # where the upstream states its license
    note: str = ""


# Each upstream's license as its own repository states it (checked against the repos' LICENSE files and
# READMEs): Visual CoT's and InfoSeek's repos are Apache 2.0 (their LICENSE files), LLaVA-CoT's README
# says Apache 2.0, The Cauldron's card licenses its prompts CC BY 4.0, TabMWP's README licenses the
# dataset CC BY-NC-SA 4.0 (the PromptPG code is MIT).
SOURCE_LICENSES: dict[str, SourceLicense] = {
    "visual_cot": SourceLicense("Visual CoT", "deepcs233/Visual-CoT", "https://huggingface.co/datasets/deepcs233/Visual-CoT",
                                "apache-2.0", "Apache 2.0", "https://github.com/deepcs233/Visual-CoT/blob/main/LICENSE",
                                "images keep the licenses of the datasets Visual CoT draws on"),
    "llava_cot": SourceLicense("LLaVA-CoT", "Xkev/LLaVA-CoT-100k", "https://huggingface.co/datasets/Xkev/LLaVA-CoT-100k",
                               "apache-2.0", "Apache 2.0", "https://github.com/PKU-YuanGroup/LLaVA-CoT#-acknowledgement",
                               "images keep the licenses of the datasets LLaVA-CoT draws on"),
    "cauldron": SourceLicense("The Cauldron", "HuggingFaceM4/the_cauldron", "https://huggingface.co/datasets/HuggingFaceM4/the_cauldron",
                              "cc-by-4.0", "CC BY 4.0 (prompts)",
                              "https://huggingface.co/datasets/HuggingFaceM4/the_cauldron#licensing-information",
                              "each sub-dataset keeps its own, often more restrictive, license"),
    "tabmwp": SourceLicense("TabMWP", "lupantech/PromptPG", "https://github.com/lupantech/PromptPG",
                            "cc-by-nc-sa-4.0", "CC BY-NC-SA 4.0", "https://github.com/lupantech/PromptPG#license",
                            "non-commercial, share-alike: rows from this source inherit it"),
    "infoseek": SourceLicense("InfoSeek", "open-vision-language/infoseek", "https://github.com/open-vision-language/infoseek",
                              "apache-2.0", "Apache 2.0", "https://github.com/open-vision-language/infoseek/blob/main/LICENSE",
                              "images come from OVEN / Wikipedia and keep their licenses"),
}
