#!/usr/bin/env python
"""Write the bundled sample sources, `samples/<source>/`, each in its upstream's native layout.

Why this exists: the demo, the tests and the docs need real records in exactly the shape each
source adapter reads (DESIGN §2), with real pixels, while nothing may be downloaded at run time.
Every image here is rendered or drawn from fixed content and fixed seeds, or taken from the public
domain / CC0 photos that ship inside the scikit-image wheel (checked to load with no network), so a
rerun rewrites byte-identical files.

    .venv/bin/python samples/build_samples.py      # needs pillow, numpy, matplotlib, scikit-image, datasets

Broken records are deliberately *not* bundled: tests copy a source into a tmp folder and break it there.
"""
from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any, Callable, Sequence

from PIL import Image

from render import (Box, bar_chart, encode, eiffel_tower, food_chain, golden_gate, icon_grid, infographic, invoice,
                    life_cycle, line_chart, magnets, meme, memo, moon_disk, phone_screen, photo, pyramid, raven_puzzle,
                    receipt, rectangle_figure, save, shapes_scene, storefront, street_signs, table_image,
                    triangle_figure, union, water_cycle)

ROOT = Path(__file__).resolve().parent
UUID_NS = uuid.UUID("6f2c1d8e-2a57-4b0e-9d55-1c1e3b7a9a01")  # fixed: LLaVA-CoT ids are uuids upstream


# ----------------------------------------------------------------------------------------------
# Visual CoT: viscot_363k.json + viscot_dataset/{dataset}_cot_train.jsonl + cot/{dataset}/{image}
# ----------------------------------------------------------------------------------------------
VISCOT_PROMPT = " Please provide the bounding box coordinate of the region that can help you answer the question better."


def square_norm_box(box: Box, w: int, h: int) -> str:
    """Visual CoT's gpt bbox turn: the box on the image padded to a square, normalised to [0, 1]."""
    x1, y1, x2, y2 = box
    if w > h:
        off = (w - h) // 2
        vals = [x1 / w, (y1 + off) / w, x2 / w, (y2 + off) / w]
    else:
        off = (h - w) // 2
        vals = [(x1 + off) / h, y1 / h, (x2 + off) / h, y2 / h]
    return "[" + ", ".join(f"{v:.3f}" for v in vals) + "]"


def build_visual_cot(out: Path) -> None:
    photos = {"coffee": photo("coffee"), "astronaut": photo("astronaut"), "rocket": photo("rocket"),
              "camera": photo("camera"), "coins": photo("coins")}
    shop, shop_b = storefront("BLUE HARBOR CAFE", "OPEN 7AM - 9PM", seed=11)
    street, street_b = street_signs("ELM ST", "MAIN ST", seed=12)
    memo_im, memo_b = memo()
    rec_im, rec_b, rec_total = receipt()
    info_im, info_b = infographic()
    inv_im, inv_b = invoice()
    # (dataset, image file, PIL image, question, answer, [boxes]); photo boxes were placed by eye
    # on the downscaled photo and checked on an overlay.
    records: list[tuple[str, str, Image.Image, str, str, list[Box]]] = [
        ("textvqa", "0a3c5e1f2b7d9c11.jpg", shop, "What is the name of the cafe?", "blue harbor cafe", [shop_b["name"]]),
        ("textcap", "1b8d2f40c6e9a712.jpg", street, "What is the name of the street on the top sign?", "elm st", [street_b["top"]]),
        ("docvqa", "ffbf0023_4.png", memo_im, "What is the date mentioned in the memo?", "March 3, 1998", [memo_b["date"]]),
        ("docvqa", "ffbf0023_4.png", memo_im, "To whom is the memo addressed?", "Dr. Helen Ortiz", [memo_b["to"]]),
        ("sroie", "X51005200931.jpg", rec_im, "What is the company in the invoice shown in the picture?", "GREEN LEAF GROCERS SDN BHD", [rec_b["company"]]),
        ("sroie", "X51005200931.jpg", rec_im, "What is the total amount in the invoice shown in the picture?", rec_total, [rec_b["total"]]),
        ("infographicsvqa", "38712.jpeg", info_im, "What percentage of commuters cycle at least once a week?", "68%", [info_b["cycle"]]),
        ("infographicsvqa", "38712.jpeg", info_im, "How many bus trips are made each month?", "2.4 million", [info_b["bus"]]),
        # gqa/0 hashes into the validation split: the counting question, which the offline tools can
        # ground (the cup's support needs a VLM to see), so Visual CoT keeps a validation row under
        # teacher.require_grounding: auto
        ("gqa", "2370115.jpg", photos["coins"], "How many coins are in the bottom row?", "6", [[2, 228, 384, 300]]),
        ("gqa", "2354786.jpg", photos["coffee"], "What is the cup sitting on?", "saucer", [[40, 92, 330, 252]]),
        ("flickr30k", "1000268201.jpg", photos["astronaut"], "What is the woman in the orange suit holding?", "a helmet", [[206, 250, 384, 384]]),
        ("flickr30k", "1001773457.jpg", photos["camera"], "What is the man looking through?", "a camera", [[190, 80, 262, 130]]),
        ("openimages", "0a1b7c3d9e2f4a60.jpg", photos["rocket"], "What is standing on the launch pad?", "a rocket", [[176, 62, 206, 250]]),
        ("vsr", "000000397133.jpg", photos["coffee"], "Is the spoon on the saucer?", "yes", [[236, 40, 276, 212]]),
        ("dude", "4f2c9b0e6a1d8357.png", inv_im, "What is the invoice number?", "INV-20417", [inv_b["number"]]),
    ]
    meta_lines: dict[str, list[dict[str, Any]]] = {}
    train: list[dict[str, Any]] = []
    for dataset, fname, im, question, answer, boxes in records:
        # tools/convert_data_to_llava_format.py: textcap images live in cot/textvqa/, and
        # question_id is the record's line index in its own {dataset}_cot_train.jsonl
        rel = Path("cot") / ("textvqa" if dataset == "textcap" else dataset) / fname
        w, h = save(im, out / rel)
        qid = len(meta_lines.setdefault(dataset, []))
        meta_lines[dataset].append(
            {"question": question, "answer": answer, "image": fname, "width": w, "height": h,
             "bboxs": boxes, "dataset": dataset, "split": "train"})
        merged = union(*boxes)
        train.append({
            "dataset": dataset,
            "split": "train",
            "question_id": qid,
            "image": [str(rel), f"{rel}###[{merged[0]}, {merged[1]}, {merged[2]}, {merged[3]}]"],
            "conversations": [
                {"from": "human", "value": "<image>\n" + question + VISCOT_PROMPT},
                {"from": "gpt", "value": square_norm_box(merged, w, h)},
                {"from": "human", "value": "<image>"},
                {"from": "gpt", "value": answer},
            ],
        })
    (out / "viscot_363k.json").write_text(json.dumps(train, indent=2) + "\n")
    for dataset, lines in meta_lines.items():
        write_jsonl(out / "viscot_dataset" / f"{dataset}_cot_train.jsonl", lines)


# ----------------------------------------------------------------------------------------------
# LLaVA-CoT: train.jsonl + images under their dataset-prefixed relative paths
# ----------------------------------------------------------------------------------------------
def cot_answer(summary: str, caption: str, reasoning: str, conclusion: str) -> str:
    return (f"<SUMMARY> {summary} </SUMMARY>\n\n<CAPTION> {caption} </CAPTION>\n\n"
            f"<REASONING> {reasoning} </REASONING>\n\n<CONCLUSION> {conclusion} </CONCLUSION>")


def build_llava_cot(out: Path) -> None:
    visitors = ([str(y) for y in range(2016, 2022)], [31, 35, 38, 42, 18, 27])
    years = ["2018", "2019", "2020", "2021", "2022"]
    urban, rural = [78, 81, 84, 87, 89], [52, 57, 61, 66, 70]
    clevr = [("sphere", "red", 70, 120, 22), ("cube", "blue", 150, 90, 20), ("cylinder", "red", 240, 110, 20),
             ("cube", "green", 110, 175, 24), ("sphere", "yellow", 200, 170, 18), ("cube", "red", 275, 185, 22),
             ("cylinder", "gray", 40, 190, 16)]
    n_red = sum(1 for o in clevr if o[1] == "red")
    letter, _ = memo()
    images: dict[str, Image.Image] = {
        "sqa/train/20511/image.png": photo("chelsea", 320),
        "sqa/train/20733/image.png": magnets(),
        "chartqa/train/png/two_col_40312.png": bar_chart("Annual visitors to Lakeside Museum", *visitors, "Visitors (thousands)"),
        "chartqa/train/png/multi_col_1207.png": line_chart("Households with broadband (%)", years,
                                                           {"Urban": urban, "Rural": rural}, "Share (%)"),
        "CLEVR_v1.0/images/train/CLEVR_train_004512.png": shapes_scene(clevr, seed=21),
        "coco/train2017/000000412093.jpg": photo("astronaut"),
        "coco/train2017/000000297147.jpg": photo("coffee"),
        "coco/train2017/000000218350.jpg": photo("camera"),
        "ai2d/images/4312.png": food_chain(),
        "geoqa+/images/1187.png": triangle_figure(50, 60, "?"),
        "docvqa/train/documents/ghjk0071_2.png": letter,
        "gqa/images/2354791.jpg": photo("rocket"),
    }
    for rel, im in images.items():
        save(im, out / rel)

    def rec(key: str, image: str, turns: list[tuple[str, str]]) -> dict[str, Any]:
        conv = []
        for human, gpt in turns:
            conv += [{"from": "human", "value": human}, {"from": "gpt", "value": gpt}]
        return {"id": str(uuid.uuid5(UUID_NS, key)), "image": image, "conversations": conv}

    diff = urban[-1] - rural[-1]
    records = [
        rec("sqa-cat", "sqa/train/20511/image.png", [(
            "What type of animal is shown in the picture?\nContext: N/A\nOptions: (A) bird (B) mammal (C) reptile (D) fish",
            cot_answer("I will identify the animal in the image and match its features to one of the animal groups.",
                       "The image is a close-up of a tabby cat with green-yellow eyes, whiskers and striped fur.",
                       "A cat has fur and whiskers and feeds its young with milk, which are traits of mammals. Birds have feathers, reptiles have scales and fish have fins, so none of those groups fit.",
                       "The answer is B."))]),
        rec("sqa-magnets", "sqa/train/20733/image.png", [(
            "Will these magnets attract or repel each other?\nContext: Two magnets are placed as shown. Hint: Magnets that attract pull together. Magnets that repel push apart.\nOptions: (A) attract (B) repel",
            cot_answer("I will find which poles of the two magnets face each other and apply the rule for magnetic poles.",
                       "Two bar magnets lie in a row. Each is labelled N on the left and S on the right, so the S pole of the left magnet faces the N pole of the right magnet.",
                       "Opposite poles attract and like poles repel. The facing poles are S and N, which are opposite, so the magnets attract.",
                       "The answer is A."))]),
        rec("chartqa-visitors", "chartqa/train/png/two_col_40312.png", [
            ("How many visitors did Lakeside Museum have in 2019, in thousands?",
             cot_answer("I will read the bar for 2019 in the chart.",
                        "A bar chart titled 'Annual visitors to Lakeside Museum' shows visitors in thousands from 2016 to 2021, with a value printed above each bar.",
                        "The bar above 2019 is labelled 42, the highest value in the chart.",
                        "42")),
            ("In which year was the number of visitors the lowest?",
             cot_answer("I will compare the bar heights and find the smallest one.",
                        "The same chart shows six bars with values 31, 35, 38, 42, 18 and 27 for 2016 to 2021.",
                        "The smallest value is 18, which belongs to the bar for 2020.",
                        "2020")),
        ]),
        rec("chartqa-broadband", "chartqa/train/png/multi_col_1207.png", [(
            "What is the difference between the urban and rural broadband shares in 2022?",
            cot_answer("I will read both lines at 2022 and subtract the rural value from the urban value.",
                       "A line chart shows the share of households with broadband for urban and rural areas from 2018 to 2022.",
                       f"In 2022 the urban line is at {urban[-1]} and the rural line is at {rural[-1]}. {urban[-1]} - {rural[-1]} = {diff}.",
                       str(diff)))]),
        rec("clevr-red", "CLEVR_v1.0/images/train/CLEVR_train_004512.png", [(
            "How many red objects are there?",
            cot_answer("I will look at every object in the scene and count the red ones.",
                       "The scene shows seven objects on a grey floor: spheres, cubes and cylinders in red, blue, green, yellow and gray.",
                       "The red objects are a sphere on the left, a cylinder on the right and a cube at the front right. That makes three red objects.",
                       str(n_red)))]),
        rec("coco-astronaut", "coco/train2017/000000412093.jpg", [
            ("What color is the woman's suit?\nA. blue\nB. white\nC. orange\nD. green",
             cot_answer("I will look at the clothing of the person and match its colour to the options.",
                        "A smiling woman with short hair wears an orange flight suit with mission patches. A US flag is on the left and a model of a space shuttle is in the upper right; she rests her hand on a helmet.",
                        "The suit is clearly orange, which is option C.",
                        "C")),
            ("What object is visible in the upper right of the image?\nA. an airplane\nB. a space shuttle model\nC. a bird\nD. a lamp\nAnswer with the option's letter from the given choices directly.",
             cot_answer("I will inspect the upper right corner and compare what is there with the options.",
                        "In the upper right there is a white model of a space shuttle attached to an external tank and boosters.",
                        "The object has the shape of the space shuttle orbiter with its rocket boosters, so it is a space shuttle model, option B.",
                        "B")),
        ]),
        rec("coco-coffee", "coco/train2017/000000297147.jpg", [(
            "What beverage is most likely in the cup?\nA. orange juice\nB. coffee\nC. milk\nD. water",
            cot_answer("I will examine the cup and the colour of its contents.",
                       "A small red cup on a red saucer holds a dark drink with light brown crema on top; a spoon rests on the saucer on a wooden table.",
                       "A small cup with brown crema is typical of espresso, so the drink is coffee.",
                       "B"))]),
        rec("coco-camera", "coco/train2017/000000218350.jpg", [(
            "What is the man doing?",
            cot_answer("I will describe the man's pose and the object in front of him.",
                       "A black-and-white photo shows a man in a dark coat standing on a lawn, looking into a camera mounted on a tripod, with buildings in the background.",
                       "His eye is at the camera's viewfinder and his hands are on the camera, so he is taking a photograph.",
                       "He is taking a photograph with a camera mounted on a tripod."))]),
        rec("ai2d-foodchain", "ai2d/images/4312.png", [(
            "Which organism in the diagram is a producer?\nA. fox\nB. rabbit\nC. grass\nD. hawk",
            cot_answer("I will follow the arrows of the food chain and find the organism that makes its own food.",
                       "A diagram titled 'A simple food chain' shows Grass, then an arrow to Rabbit, then an arrow to Fox, with a sun in the corner.",
                       "Producers make their own food from sunlight. Grass is at the start of the chain and is eaten by the rabbit, so grass is the producer.",
                       "C"))]),
        rec("geoqa-triangle", "geoqa+/images/1187.png", [(
            "As shown in the figure, in triangle ABC, ∠A = 50° and ∠B = 60°. What is the measure of ∠C?\nChoices:\nA:60°\nB:70°\nC:80°\nD:90°",
            cot_answer("I will use the angle sum of a triangle.",
                       "The figure shows triangle ABC with angle A marked 50° and angle B marked 60°; angle C is unknown.",
                       "The angles of a triangle add up to 180°. ∠C = 180° - 50° - 60° = 70°, which is choice B.",
                       "B"))]),
        rec("docvqa-memo", "docvqa/train/documents/ghjk0071_2.png", [(
            "What is the subject of the memo?",
            cot_answer("I will find the Subject line in the memo header.",
                       "A typed memorandum with To, From, Date and Subject lines followed by a short paragraph about laboratory renovation.",
                       "The Subject line reads 'Laboratory renovation schedule'.",
                       "Laboratory renovation schedule"))]),
        rec("gqa-rocket", "gqa/images/2354791.jpg", [(
            "What vehicle is in the center of the image?",
            cot_answer("I will identify the tall object in the middle of the photo.",
                       "At dusk, a tall white rocket stands on a launch pad between lightning-protection towers, with bright lights at its base.",
                       "The object is a tall, slender launch vehicle standing upright on a pad, so it is a rocket.",
                       "rocket"))]),
    ]
    write_jsonl(out / "train.jsonl", records)


# ----------------------------------------------------------------------------------------------
# The Cauldron: <subset>/train-00000-of-00001.parquet with images: [Image], texts: [{user, assistant, source}]
# ----------------------------------------------------------------------------------------------
def _tag(photos: set[int], im: Image.Image) -> Image.Image:
    photos.add(id(im))
    return im


def build_cauldron(out: Path) -> None:
    from datasets import Dataset, Features, Image as HFImage, List, Value, disable_progress_bars

    disable_progress_bars()

    features = Features({
        "images": List(HFImage()),
        "texts": List({"user": Value("string"), "assistant": Value("string"), "source": Value("string")}),
    })

    def qa(user: str, assistant: str, subset: str) -> dict[str, str]:
        return {"user": user, "assistant": assistant, "source": subset}

    def cased(text: str, is_question: bool = False) -> str:
        """The builder's `correct_casing`: a capital first letter, and a period after an answer."""
        if text and text[0].islower():
            text = text.capitalize()
        return text if text.endswith(".") or is_question else text + "."

    def mc(question: str, choices: Sequence[str], cased_choices: bool = False) -> str:
        """The builder's multiple-choice prompt (TQA writes each option as correct_casing("a. text"))."""
        lines = "\n".join(cased(f"{'abcdefgh'[i]}. {c}") if cased_choices else f"{'ABCDEFGH'[i]}. {c}"
                          for i, c in enumerate(choices))
        return f"Question: {question}\nChoices:\n{lines}\nAnswer with the letter."

    coffee, cat = photo("coffee", 320), photo("chelsea", 320)
    photos = set()  # ids of the images that are photographs: stored as JPEG, everything drawn as PNG
    bakery, _ = storefront("SUNRISE BAKERY", "FRESH BREAD\nDAILY\n555-0142", seed=31, board="#7a2e1f")
    parking, _ = street_signs("NO PARKING", "8AM - 6PM", seed=32)
    league = [("Harbor City", "14", "3", "45"), ("Riverside", "12", "5", "41"), ("Oak Valley", "11", "6", "39"),
              ("Northgate", "9", "8", "33"), ("Westfield", "6", "11", "24")]
    trails = [("Cedar Loop", "4.2", "120", "easy"), ("Ridge Path", "9.8", "640", "hard"),
              ("Lake Trail", "6.5", "210", "easy"), ("Falls Route", "7.1", "430", "moderate")]
    raven1 = raven_puzzle(
        [[("circle", 1, "white"), ("circle", 2, "white"), ("circle", 3, "white")],
         [("square", 1, "white"), ("square", 2, "white"), ("square", 3, "white")],
         [("triangle", 1, "white"), ("triangle", 2, "white"), None]],  # type: ignore[list-item]
        [("triangle", 2, "white"), ("square", 3, "white"), ("triangle", 1, "white"), ("circle", 3, "white"),
         ("triangle", 3, "white"), ("triangle", 3, "gray"), ("square", 2, "white"), ("triangle", 4, "white")])
    raven2 = raven_puzzle(
        [[("square", 2, "white"), ("square", 2, "#9e9e9e"), ("square", 2, "black")],
         [("circle", 2, "white"), ("circle", 2, "#9e9e9e"), ("circle", 2, "black")],
         [("triangle", 2, "white"), ("triangle", 2, "#9e9e9e"), None]],  # type: ignore[list-item]
        [("triangle", 2, "white"), ("circle", 2, "black"), ("triangle", 2, "black"), ("triangle", 1, "black"),
         ("triangle", 2, "#9e9e9e"), ("square", 2, "black"), ("triangle", 3, "black"), ("circle", 1, "white")])
    subsets: dict[str, list[tuple[list[Image.Image], list[dict[str, str]]]]] = {
        # The builder's templates: prompts_hm + "\nAnswer yes or no.", answers "Yes." / "No."
        "hateful_memes": [
            ([_tag(photos, meme(coffee, "ME AFTER THE FIRST SIP", "READY FOR MONDAY"))],
             [qa("Does this meme promote hate speech?\nAnswer yes or no.", "No.", "Hateful Memes")]),
            ([_tag(photos, meme(cat, "WHEN THE ALARM RINGS", "FIVE MORE MINUTES"))],
             [qa("Is the language used in this meme hateful?\nAnswer yes or no.", "No.", "Hateful Memes")]),
        ],
        # prompts_screen2words, answer correct_casing(caption)
        "screen2words": [
            ([phone_screen("Weather", ["Springfield", "21°C  Sunny", "Tue  19°C  Cloudy", "Wed  17°C  Rain"], None, seed=41)],
             [qa("Summarize the information in this screenshot.", cased("screen showing the weather forecast for springfield over the next days"), "Screen2Words")]),
            ([phone_screen("RecipeBox", ["Welcome back", "[Email]", "[Password]"], "Sign in", seed=42, accent="#e65100")],
             [qa("Provide a description of this screenshot.", cased("login page of a recipe app asking for email and password"), "Screen2Words")]),
        ],
        # question + random.choice(PROMPTS_ANSWER_SHORTLY), answer correct_casing(answer)
        "st_vqa": [
            ([bakery], [qa("What is the name of the bakery?\nQuick response, please.", cased("sunrise bakery"), "ST-VQA"),
                        qa("What phone number is written on the window?\nKeep it brief.", cased("555-0142"), "ST-VQA"),
                        qa("What does the bakery sell daily?\nBe succinct.", cased("fresh bread"), "ST-VQA")]),
            ([parking], [qa("What is not allowed here?\nShort answer required.", cased("parking"), "ST-VQA"),
                         qa("Until what time does the rule apply?\nAnswer briefly.", cased("6pm"), "ST-VQA")]),
        ],
        "vistext": [
            ([line_chart("Monthly rainfall in Greenfield", ["Jan", "Feb", "Mar", "Apr", "May", "Jun"],
                         {"Rainfall": [58, 47, 66, 92, 71, 35]}, "Rainfall (mm)")],
             [qa("Describe this chart.", "The line chart shows monthly rainfall in Greenfield from January to June. "
                 "Rainfall rises from 47 mm in February to a peak of 92 mm in April and then falls to its lowest value, 35 mm, in June.", "VisText")]),
            ([bar_chart("Books borrowed per week by grade", ["Grade 1", "Grade 2", "Grade 3", "Grade 4"], [24, 31, 45, 38], "Books", color="#8e44ad")],
             [qa("Describe this chart.", "The bar chart shows how many books each grade borrows per week. "
                 "Grade 3 borrows the most with 45 books, followed by grade 4 with 38, grade 2 with 31 and grade 1 with 24.", "VisText")]),
        ],
        # correct_casing(question, is_question=True) / correct_casing(answer); some rows get a
        # parse_table_instruct turn answered by str(table) (dropped by the `table_dump` QA filter)
        "robut_wtq": [
            ([table_image("Spring league standings", ["Team", "Wins", "Losses", "Points"], league)],
             [qa(cased("which team had the most points?", True), cased("Harbor City"), "robut_wtq"),
              qa(cased("how many teams scored more than 35 points?", True), cased(str(sum(int(r[3]) > 35 for r in league))), "robut_wtq"),
              qa(cased("what is the total number of wins of the top two teams?", True), cased(str(int(league[0][1]) + int(league[1][1]))), "robut_wtq"),
              qa("Parse the full table.", str({"header": ["Team", "Wins", "Losses", "Points"], "rows": [list(r) for r in league]}), "robut_wtq")]),
            ([table_image("Hiking trails", ["Trail", "Length (km)", "Elevation gain (m)", "Difficulty"], trails)],
             [qa(cased("which trail is the longest?", True), cased("Ridge Path"), "robut_wtq"),
              qa(cased("how many trails are rated easy?", True), cased(str(sum(r[3] == "easy" for r in trails))), "robut_wtq")]),
        ],
        "iconqa": [
            ([icon_grid("star", 7, 4, "#fdd835")], [qa(mc("How many stars are there?", ["6", "7", "8"]), "Answer: B", "IconQA")]),
            ([icon_grid("circle", 9, 5, "#4fc3f7")], [qa("How many circles are there?", "9", "IconQA")]),
        ],
        "raven": [
            ([raven1], [qa("Which figure should complete the logical sequence?", "E", "RAVEN")]),
            ([raven2], [qa("Which figure should complete the logical sequence?", "C", "RAVEN")]),
        ],
        "intergps": [
            ([triangle_figure(35, 85, "x°")], [qa(mc("Find x.", ["50", "55", "60", "65"]), "Answer: C", "InterGPS")]),
            ([rectangle_figure(8, 5, "cm")], [qa(mc("Find the perimeter of the rectangle.", ["13", "26", "40", "80"]), "Answer: B", "InterGPS")]),
        ],
        "tqa": [
            ([water_cycle()], [qa(mc("Which process is shown by the arrow rising from the ocean?", ["precipitation", "evaporation", "collection", "condensation"], True), "Answer: B", "TQA"),
                               qa(mc("What forms when water vapor cools high in the sky?", ["rivers", "clouds", "oceans", "soil"], True), "Answer: B", "TQA")]),
            ([life_cycle()], [qa(mc("Which stage comes right after the larva?", ["egg", "adult", "pupa"], True), "Answer: C", "TQA"),
                              qa(mc("How many stages of the life cycle are shown?", ["2", "3", "4", "5"], True), "Answer: C", "TQA")]),
        ],
    }
    for subset, rows in subsets.items():
        data = {"images": [[{"bytes": encode(im, "JPEG" if id(im) in photos else "PNG"), "path": None}
                            for im in imgs] for imgs, _ in rows],
                "texts": [texts for _, texts in rows]}
        target = out / subset / "train-00000-of-00001.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        Dataset.from_dict(data, features=features).to_parquet(str(target))


# ----------------------------------------------------------------------------------------------
# TabMWP: problems_{train,dev,test}.json (pid -> record) + tables/{pid}.png
# ----------------------------------------------------------------------------------------------
def _money(v: float) -> str:
    return f"${v:,.2f}"


def tabmwp_problems() -> list[dict[str, Any]]:
    """Twelve problems, answers and solutions computed here so they cannot disagree with the tables."""
    P: list[dict[str, Any]] = []

    def add(split: str, grade: int, title: str, header: list[str], rows: list[list[str]], question: str,
            answer: str, solution: str, ques_type: str = "free_text", ans_type: str = "integer_number",
            choices: list[str] | None = None, unit: str | None = None) -> None:
        table = "\n".join(" | ".join(r) for r in [header] + rows)
        P.append({
            "question": question, "choices": choices, "answer": answer, "unit": unit, "table_title": title or None,
            "table": table, "table_for_pd": {h: [r[i] for r in rows] for i, h in enumerate(header)},
            "row_num": len(rows) + 1, "column_num": len(header), "solution": solution,
            "ques_type": ques_type, "ans_type": ans_type, "grade": grade, "split": split,
        })

    # 1 mean
    stickers = [("Ava", 45), ("Ben", 52), ("Chloe", 38), ("Diego", 61), ("Emma", 49), ("Finn", 55)]
    vals = [v for _, v in stickers]
    s, n = sum(vals), len(vals)
    add("train", 5, "Stickers collected", ["Name", "Number of stickers"], [[a, str(b)] for a, b in stickers],
        "Some students counted the stickers in their albums. What is the mean of the numbers?", str(s // n),
        f"Read the numbers from the table.\n{', '.join(map(str, vals))}\nFirst, count how many numbers are in the group.\n"
        f"There are {n} numbers.\nNow add all the numbers together:\n{' + '.join(map(str, vals))} = {s}\n"
        f"Now divide the sum by the number of numbers:\n{s} ÷ {n} = {s // n}\nThe mean is {s // n}.")
    assert s % n == 0
    # 2 median
    laps = [("Monday", 7), ("Tuesday", 4), ("Wednesday", 9), ("Thursday", 6), ("Friday", 8)]
    srt = sorted(v for _, v in laps)
    add("train", 6, "Laps swum", ["Day", "Number of laps"], [[a, str(b)] for a, b in laps],
        "Kira wrote down how many laps she swam each day. What is the median of the numbers?", str(srt[2]),
        f"Read the numbers from the table.\n{', '.join(str(v) for _, v in laps)}\nFirst, arrange the numbers from least to greatest:\n"
        f"{', '.join(map(str, srt))}\nNow find the number in the middle.\nThe number in the middle is {srt[2]}.\nThe median is {srt[2]}.")
    # 3 range (dev)
    temps = [("Sunday", 12), ("Monday", 18), ("Tuesday", 9), ("Wednesday", 15), ("Thursday", 21)]
    hi, lo = max(v for _, v in temps), min(v for _, v in temps)
    add("dev", 6, "High temperatures", ["Day", "Temperature (°C)"], [[a, str(b)] for a, b in temps],
        "A weather station recorded the high temperature each day. What is the range of the numbers?", str(hi - lo),
        f"Read the numbers from the table.\n{', '.join(str(v) for _, v in temps)}\nFirst, find the greatest number. The greatest number is {hi}.\n"
        f"Next, find the least number. The least number is {lo}.\nSubtract the least number from the greatest number:\n{hi} - {lo} = {hi - lo}\nThe range is {hi - lo}.")
    # 4 sum of prices
    shop = [("notebook", 2.35), ("box of crayons", 3.80), ("glue stick", 1.15), ("pair of scissors", 4.50)]
    a, b = shop[0][1], shop[1][1]
    add("train", 3, "", ["Item", "Price"], [[k, _money(v)] for k, v in shop],
        "How much money does Luke need to buy a notebook and a box of crayons?", f"{a + b:.2f}",
        f"Add the price of a notebook and the price of a box of crayons:\n{_money(a)} + {_money(b)} = {_money(a + b)}\n"
        f"Luke needs {_money(a + b)}.", ans_type="decimal_number", unit="$")
    # 5 difference of prices (test)
    fruit = [("pineapple", 3.25), ("mango", 1.40), ("bag of apples", 4.05), ("melon", 2.90)]
    add("test", 3, "", ["Item", "Price"], [[k, _money(v)] for k, v in fruit],
        "How much more does a bag of apples cost than a melon?", f"{4.05 - 2.90:.2f}",
        f"Subtract the price of a melon from the price of a bag of apples.\n{_money(4.05)} - {_money(2.90)} = {_money(4.05 - 2.90)}\n"
        f"A bag of apples costs {_money(4.05 - 2.90)} more than a melon.", ans_type="decimal_number", unit="$")
    # 6 rate of change
    trees = [("2017", 140), ("2018", 152), ("2019", 167), ("2020", 181)]
    add("train", 8, "Trees planted in Maple Park", ["Year", "Trees"], [[a, str(b)] for a, b in trees],
        "The park service counted the trees planted in Maple Park each year. What was the rate of change between 2019 and 2020?",
        str(181 - 167),
        "Find the change in the number of trees and divide by the change in years.\n"
        f"Change in trees: 181 - 167 = {181 - 167}\nChange in years: 2020 - 2019 = 1\nRate of change: {181 - 167} ÷ 1 = {181 - 167}\n"
        f"The number of trees increased by {181 - 167} per year.", unit="trees per year")
    # 7 clock time (multi choice): the answer keeps its periods, as every clock-time answer upstream does
    stops = [("Elm Street", "1:55 P.M."), ("Oak Street", "2:10 P.M."), ("Pine Road", "2:40 P.M."), ("Lake Avenue", "3:05 P.M.")]
    add("train", 3, "Bus schedule", ["Stop", "Time"], [list(r) for r in stops],
        "Look at the following schedule. When does the bus leave Oak Street?", "2:10 P.M.",
        "Find Oak Street on the schedule. Find the time in the same row.\nThe bus leaves Oak Street at 2:10 P.M.",
        ques_type="multi_choice", ans_type="extractive_text", choices=[t for _, t in stops])
    # 8 enough money (multi choice, yes/no)
    toys = [("kite", 6.75), ("yo-yo", 2.20), ("puzzle", 8.40), ("toy car", 4.95)]
    total = 6.75 + 2.20
    add("train", 3, "", ["Toy", "Price"], [[k, _money(v)] for k, v in toys],
        "Nina has $12.00. Does she have enough to buy a kite and a yo-yo?", "yes",
        f"Add the price of a kite and the price of a yo-yo:\n{_money(6.75)} + {_money(2.20)} = {_money(total)}\n"
        f"{_money(total)} is less than $12.00. Nina does have enough money.",
        ques_type="multi_choice", ans_type="boolean_text", choices=["yes", "no"])
    # 9 most visitors (dev, extractive)
    museum = [("Thursday", 310), ("Friday", 285), ("Saturday", 472), ("Sunday", 438)]
    best = max(museum, key=lambda r: r[1])[0]
    add("dev", 2, "Museum visitors", ["Day", "Visitors"], [[a, str(b)] for a, b in museum],
        "The museum counted its visitors each day. On which day were there the most visitors?", best,
        f"Find the greatest number in the table. Remember to compare the numbers starting with the highest place value. "
        f"The greatest number is {max(v for _, v in museum)}.\nNow find the corresponding day. {best} corresponds to {max(v for _, v in museum)}.",
        ques_type="multi_choice", ans_type="extractive_text", choices=[d for d, _ in museum])
    # 10 even or odd (test)
    jars = [("red", 13), ("blue", 8), ("green", 6)]
    tot = sum(v for _, v in jars)
    add("test", 2, "Marbles in a jar", ["Color", "Number of marbles"], [[a, str(b)] for a, b in jars],
        "Is the total number of marbles even or odd?", "odd" if tot % 2 else "even",
        f"Add the numbers of marbles: {' + '.join(str(v) for _, v in jars)} = {tot}.\n"
        f"{tot} ends in {tot % 10}, so it is {'odd' if tot % 2 else 'even'}.",
        ques_type="multi_choice", ans_type="other_text", choices=["even", "odd"])
    # 11 fewest (extractive)
    shapes = [("triangles", 14), ("squares", 9), ("circles", 17), ("hexagons", 11)]
    few = min(shapes, key=lambda r: r[1])[0]
    add("train", 1, "Shapes in a box", ["Shape", "Number"], [[a, str(b)] for a, b in shapes],
        "Which shape is there the fewest of?", few,
        f"Find the least number in the table. The least number is {min(v for _, v in shapes)}.\n"
        f"Now find the corresponding shape. {few.capitalize()} corresponds to {min(v for _, v in shapes)}.",
        ques_type="multi_choice", ans_type="extractive_text", choices=[s for s, _ in shapes])
    # 12 unit price times quantity
    nuts = [("almonds", 6.20), ("cashews", 8.10), ("peanuts", 2.75), ("walnuts", 7.40)]
    add("train", 5, "", ["Nut", "Price per pound"], [[k, _money(v)] for k, v in nuts],
        "Owen wants to buy 3 pounds of almonds. How much will he spend?", f"{3 * 6.20:.2f}",
        f"Find the cost of the almonds. Multiply the price per pound by the number of pounds.\n"
        f"{_money(6.20)} × 3 = {_money(3 * 6.20)}\nHe will spend {_money(3 * 6.20)}.", ans_type="decimal_number", unit="$")
    return P


def build_tabmwp(out: Path) -> None:
    problems = tabmwp_problems()
    by_split: dict[str, dict[str, Any]] = {"train": {}, "dev": {}, "test": {}}
    pid = 100
    for p in problems:
        pid += 37  # sparse, stable ids like upstream's
        header = p["table"].split("\n")[0].split(" | ")
        rows = [r.split(" | ") for r in p["table"].split("\n")[1:]]
        save(table_image(p["table_title"], header, rows), out / "tables" / f"{pid}.png")
        by_split[p["split"]][str(pid)] = p
    for split, recs in by_split.items():
        (out / f"problems_{split}.json").write_text(json.dumps(recs, indent=2, ensure_ascii=False) + "\n")
    for split in ("dev", "test"):  # the released 1k evaluation subsets repeat problems of dev and test
        subset = dict(list(by_split[split].items())[:1])
        (out / f"problems_{split}1k.json").write_text(json.dumps(subset, indent=2, ensure_ascii=False) + "\n")
    (out / "splits.json").write_text(json.dumps({s: list(r) for s, r in by_split.items()}, indent=2) + "\n")


# ----------------------------------------------------------------------------------------------
# InfoSeek: infoseek_{train,val}.jsonl + id2image.jsonl + images/ + corpus/passages.jsonl
# ----------------------------------------------------------------------------------------------
def num_eval(v: float, rel: float = 0.1) -> list[dict[str, Any]]:
    return [{"wikidata": v, "range": [round(v * (1 - rel), 2), round(v * (1 + rel), 2)]}]


PASSAGES: list[tuple[str, str, str]] = [
    # (id, title, text). Gold passages for the sample questions, then distractors on nearby topics.
    ("falcon_9-0", "Falcon 9", "Falcon 9 is a partially reusable two-stage medium-lift launch vehicle designed and manufactured in the United States by SpaceX. It first flew on 4 June 2010."),
    ("falcon_9-1", "Falcon 9", "The Falcon 9 Full Thrust version is 70 metres (230 ft) tall and 3.7 metres in diameter. Its first stage is powered by nine Merlin engines, which gave the rocket the '9' in its name."),
    ("falcon_9-2", "Falcon 9", "In February 2015 a Falcon 9 launched the Deep Space Climate Observatory (DSCOVR) from Cape Canaveral, Florida."),
    ("falcon_heavy-0", "Falcon Heavy", "Falcon Heavy is a heavy-lift launch vehicle made by SpaceX. It is built from three Falcon 9 first-stage cores and first flew on 6 February 2018."),
    ("saturn_v-0", "Saturn V", "Saturn V was an American super heavy-lift rocket developed by NASA for the Apollo program. It stood 110.6 metres (363 ft) tall and last flew in 1973."),
    ("atlas_v-0", "Atlas V", "Atlas V is an expendable launch system operated by United Launch Alliance. It first flew in August 2002."),
    ("moon-0", "Moon", "The Moon is Earth's only natural satellite. Its mean distance from Earth is about 384,400 kilometres (238,900 mi); light covers that distance in about 1.3 seconds."),
    ("moon-1", "Moon", "The Moon has a mean diameter of about 3,474 kilometres, a little over a quarter of Earth's. Its surface is covered with impact craters and dark basaltic plains called maria."),
    ("moon-2", "Moon", "The Moon orbits Earth once every 27.3 days (the sidereal month), while its cycle of phases takes about 29.5 days."),
    ("mars-0", "Mars", "Mars is the fourth planet from the Sun. It has two small moons, Phobos and Deimos, and its mean distance from the Sun is about 228 million kilometres."),
    ("europa-0", "Europa (moon)", "Europa is the smallest of Jupiter's four Galilean moons. It was discovered by Galileo Galilei in 1610."),
    ("cat-0", "Cat", "The cat (Felis catus) is a small domesticated carnivorous mammal. It is the only domesticated species in the family Felidae."),
    ("cat-1", "Cat", "Domestic cats have retractable claws, good night vision and a keen sense of smell. Adult domestic cats typically weigh between 4 and 5 kilograms."),
    ("lion-0", "Lion", "The lion (Panthera leo) is a large cat native to Africa and India. Adult males have a prominent mane."),
    ("tiger-0", "Tiger", "The tiger (Panthera tigris) is the largest living cat species. It is recognisable by its dark vertical stripes on orange fur."),
    ("dog-0", "Dog", "The dog (Canis familiaris) is a domesticated descendant of the wolf and was the first species to be domesticated by humans."),
    ("horse-0", "Horse", "The horse (Equus caballus) is a domesticated, one-toed, hoofed mammal of the family Equidae."),
    ("horse-1", "Horse", "A mare carries her foal for about 11 months: gestation in horses lasts roughly 320 to 370 days, and a single foal is usual."),
    ("donkey-0", "Donkey", "The donkey (Equus asinus) is a domesticated equine. A donkey's pregnancy usually lasts about 12 months."),
    ("zebra-0", "Zebra", "Zebras are African equines with black-and-white striped coats. The three living species are the plains zebra, Grévy's zebra and the mountain zebra."),
    ("coffee-0", "Coffee", "Coffee is a beverage brewed from roasted coffee beans, the seeds of berries from plants of the genus Coffea. The two most cultivated species are Coffea arabica and Coffea canephora (robusta)."),
    ("coffee-1", "Coffee production in Brazil", "Brazil is the world's largest producer of coffee, followed by Vietnam; it has held first place for more than 150 years."),
    ("espresso-0", "Espresso", "Espresso is a concentrated form of coffee made by forcing hot water under pressure through finely ground coffee beans. It is usually served in small cups."),
    ("tea-0", "Tea", "Tea is an aromatic beverage made by pouring hot water over cured leaves of Camellia sinensis. China is the world's largest producer of tea."),
    ("cocoa-0", "Cocoa bean", "Cocoa beans are the dried and fermented seeds of Theobroma cacao. Côte d'Ivoire is the world's largest producer of cocoa beans."),
    ("xdf-0", "Hubble eXtreme Deep Field", "The Hubble eXtreme Deep Field (XDF), released in September 2012, combines about ten years of Hubble Space Telescope observations of a small patch of sky in the constellation Fornax."),
    ("hdf-0", "Hubble Deep Field", "The Hubble Deep Field is an image of a small region in the constellation Ursa Major, built from observations by the Hubble Space Telescope in December 1995. It contains about 3,000 objects, almost all of them galaxies."),
    ("hst-0", "Hubble Space Telescope", "The Hubble Space Telescope was launched into low Earth orbit on 24 April 1990 aboard the Space Shuttle Discovery. It is one of NASA's Great Observatories."),
    ("jwst-0", "James Webb Space Telescope", "The James Webb Space Telescope, launched on 25 December 2021, observes mainly in the infrared and orbits near the Sun–Earth L2 point."),
    ("chandra-0", "Chandra X-ray Observatory", "The Chandra X-ray Observatory was launched by NASA in July 1999 aboard the Space Shuttle Columbia."),
    ("eiffel-0", "Eiffel Tower", "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. It is named after the engineer Gustave Eiffel, whose company designed and built it."),
    ("eiffel-1", "Eiffel Tower", "The Eiffel Tower was built for the 1889 World's Fair. Including its antennas it is 330 metres (1,083 ft) tall."),
    ("tokyo_tower-0", "Tokyo Tower", "Tokyo Tower is a communications and observation tower in the Minato district of Tokyo, Japan. Completed in 1958, it is 333 metres tall."),
    ("blackpool_tower-0", "Blackpool Tower", "Blackpool Tower is a tourist attraction in Blackpool, England. Inspired by the Eiffel Tower, it opened in 1894 and is 158 metres tall."),
    ("great_pyramid-0", "Great Pyramid of Giza", "The Great Pyramid of Giza is the oldest and largest of the three pyramids in the Giza pyramid complex near Cairo, Egypt. It was built as a tomb for the Fourth Dynasty pharaoh Khufu (Cheops)."),
    ("great_pyramid-1", "Great Pyramid of Giza", "The Great Pyramid was originally about 146.6 metres (481 ft) tall and was the tallest human-made structure in the world for more than 3,800 years."),
    ("khafre-0", "Pyramid of Khafre", "The Pyramid of Khafre is the second-tallest of the pyramids of Giza and the tomb of the pharaoh Khafre."),
    ("djoser-0", "Pyramid of Djoser", "The Pyramid of Djoser at Saqqara, Egypt, is a step pyramid built for the pharaoh Djoser in the 27th century BC."),
    ("el_castillo-0", "El Castillo, Chichen Itza", "El Castillo is a step-pyramid temple at Chichen Itza in Yucatán, Mexico, built by the Maya civilization."),
    ("golden_gate-0", "Golden Gate Bridge", "The Golden Gate Bridge is a suspension bridge spanning the Golden Gate, the strait that connects San Francisco Bay with the Pacific Ocean. It links San Francisco to Marin County, California."),
    ("golden_gate-1", "Golden Gate Bridge", "The Golden Gate Bridge opened to pedestrians on 27 May 1937 and to vehicles the next day. Its main span is 1,280 metres (4,200 ft) and it is painted a colour called International Orange."),
    ("brooklyn_bridge-0", "Brooklyn Bridge", "The Brooklyn Bridge is a hybrid cable-stayed and suspension bridge in New York City over the East River. It opened on 24 May 1883."),
    ("tower_bridge-0", "Tower Bridge", "Tower Bridge is a combined bascule and suspension bridge in London over the River Thames, completed in 1894."),
    ("akashi-0", "Akashi Kaikyō Bridge", "The Akashi Kaikyō Bridge in Japan links Kobe with Awaji Island; its central span is 1,991 metres long."),
]


def build_infoseek(out: Path) -> None:
    images = {"oven_04011235": photo("rocket"), "oven_04027781": photo("chelsea"), "oven_04033310": photo("horse"),
              "oven_04051902": photo("coffee"), "oven_04060448": eiffel_tower(51), "oven_04072216": pyramid(52),
              "oven_04085573": golden_gate(53), "oven_04099120": moon_disk(54), "oven_04105867": photo("hubble_deep_field")}
    id2image = []
    for image_id, im in images.items():
        rel = f"images/{image_id}.jpg"
        save(im, out / rel)
        id2image.append({"image_id": image_id, "image_path": rel})
    write_jsonl(out / "id2image.jsonl", id2image)

    def q(split: str, k: int, image_id: str, question: str, answer: list[str], answer_eval: Any, data_split: str) -> dict[str, Any]:
        return {"data_id": f"infoseek_{split}_{k:08d}", "image_id": image_id, "question": question,
                "answer": answer, "answer_eval": answer_eval, "data_split": data_split}

    train = [
        q("train", 0, "oven_04011235", "Which company manufactures this rocket?", ["SpaceX"],
          ["SpaceX", "Space Exploration Technologies Corp.", "Space Exploration Technologies"], "train"),
        q("train", 1, "oven_04011235", "What is the height of this rocket in metres?", ["70"], num_eval(70.0), "train"),
        q("train", 2, "oven_04027781", "What is the scientific name of this animal?", ["Felis catus"],
          ["Felis catus", "Felis silvestris catus"], "train"),
        q("train", 3, "oven_04033310", "How many months does the pregnancy of this animal typically last?", ["11"],
          [{"wikidata": 11.0, "range": [10.0, 12.0]}], "train"),
        q("train", 4, "oven_04051902", "Which country is the largest producer of the beans used to make this drink?", ["Brazil"],
          ["Brazil", "Federative Republic of Brazil"], "train"),
        q("train", 5, "oven_04060448", "In which city is this tower located?", ["Paris"], ["Paris", "Paris, France"], "train"),
        q("train", 6, "oven_04072216", "For which pharaoh was this pyramid built?", ["Khufu"], ["Khufu", "Cheops"], "train"),
        q("train", 7, "oven_04085573", "In which year did this bridge open?", ["1937"], ["1937"], "train"),
    ]
    val = [
        q("val", 0, "oven_04099120", "What is the average distance from Earth to this celestial body in kilometres?", ["384400"],
          num_eval(384400.0), "val_unseen_question"),
        q("val", 1, "oven_04105867", "Which space telescope took this image?", ["Hubble Space Telescope"],
          ["Hubble Space Telescope", "Hubble", "HST"], "val_unseen_entity"),
        q("val", 2, "oven_04060448", "What is the height of this tower in metres?", ["330"], num_eval(330.0), "val_unseen_question"),
        q("val", 3, "oven_04072216", "In which country is this pyramid located?", ["Egypt"], ["Egypt"], "val_unseen_question"),
        q("val", 4, "oven_04085573", "Which strait does this bridge span?", ["Golden Gate"], ["Golden Gate", "Golden Gate strait"], "val_unseen_entity"),
    ]
    write_jsonl(out / "infoseek_train.jsonl", train)
    write_jsonl(out / "infoseek_val.jsonl", val)
    # The with-KB files: the entity each question is about (entity ids made up, in Wikidata's Q-form)
    names = {"oven_04011235": "Falcon 9", "oven_04027781": "Cat", "oven_04033310": "Horse", "oven_04051902": "Coffee",
             "oven_04060448": "Eiffel Tower", "oven_04072216": "Great Pyramid of Giza",
             "oven_04085573": "Golden Gate Bridge", "oven_04099120": "Moon", "oven_04105867": "Hubble eXtreme Deep Field"}
    entity = {image_id: (f"Q9{k:07d}", name) for k, (image_id, name) in enumerate(names.items())}
    for name, rows in (("infoseek_train_withkb.jsonl", train), ("infoseek_val_withkb.jsonl", val)):
        write_jsonl(out / name, [{"data_id": r["data_id"], "entity_id": entity[r["image_id"]][0],
                                  "entity_text": entity[r["image_id"]][1]} for r in rows])
    write_jsonl(out / "corpus" / "passages.jsonl", [{"id": i, "title": t, "text": x} for i, t, x in PASSAGES])


# ----------------------------------------------------------------------------------------------
def write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


BUILDERS: dict[str, Callable[[Path], None]] = {
    "visual_cot": build_visual_cot, "llava_cot": build_llava_cot, "cauldron": build_cauldron,
    "tabmwp": build_tabmwp, "infoseek": build_infoseek,
}


def rebuild(builders: dict[str, Callable[[Path], None]], root: Path) -> None:
    """Each `root/<source>/` emptied and written again by its builder (also used for the test fixtures)."""
    for source, build in builders.items():
        out = root / source
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        build(out)
        files = [p for p in out.rglob("*") if p.is_file()]
        print(f"{source:11s} {len(files):3d} files {sum(p.stat().st_size for p in files) / 1024:7.1f} KiB")


def main() -> None:
    rebuild(BUILDERS, ROOT)


if __name__ == "__main__":
    main()
