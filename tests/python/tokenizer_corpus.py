"""Deterministic tokenizer test corpus (>= 10,000 byte strings), generated, never downloaded.

Covers English and other scripts, CJK and kana, emoji sequences, code in several languages,
long digit runs, whitespace/newline runs (including the exotic Unicode spaces), punctuation and
symbol clusters, every single byte 0-255, single code points sampled across all planes, added
(special) tokens in text, and invalid UTF-8. Used by test_tokenizer_parity.py and by
scripts/gen_tokenizer_golden.py (which records HF `tokenizers` ids for the valid strings).
"""
import random

SEED = 20240611

ENGLISH = ("the quick brown fox jumps over lazy dog and then some people said that it was "
           "not what they expected however we believe tokenization matters because models read "
           "bytes through merges rather than letters I'm you're don't can't we'll they've she'd "
           "Hello World OpenAI DeepSeek JSON HTTP URL API iPhone McDonald's O'Brien e-mail "
           "state-of-the-art naïve café résumé coöperate").split()
WORDS = {
    "fr": "le la les une des où très naïveté garçon français élève déjà ça être Noël".split(),
    "de": "Straße Größe Übung über schön Mädchen Fußball Äpfel öffnen müssen weiß".split(),
    "es": "¿Qué tal? ¡Hola! año niño mañana corazón pingüino también está".split(),
    "ru": "Привет мир как дела это тест токенизатора Москва ёлка съешь ещё".split(),
    "el": "Καλημέρα κόσμε ελληνικά γλώσσα αλφάβητο ψυχή ωραία".split(),
    "ar": "مرحبا بالعالم اللغة العربية كتاب مدرسة الحمد لله".split(),
    "he": "שלום עולם עברית ספר בית ספר תודה".split(),
    "hi": "नमस्ते दुनिया हिन्दी भाषा क्षत्रिय विद्यालय प्रेम".split(),
    "th": "สวัสดีครับ ภาษาไทย โลก ประเทศ ความรัก".split(),
    "ko": "안녕하세요 세계 한국어 토크나이저 테스트 서울".split(),
    "vi": "Tiếng Việt xin chào thế giới người Hà Nội phở".split(),
    "zh": "你好世界 中文分词 测试 人工智能 深度求索 北京 上海 学习 模型 机器".split(),
    "ja": "こんにちは 世界 日本語 カタカナ ひらがな 東京 テスト・ケース ラーメン ー".split(),
}
CJK_PUNCT = list("，。、；：？！「」『』（）《》【】〜・…—“”‘’")
EMOJI = ["😀", "😂", "🥲", "👍", "👍🏽", "❤️", "🔥", "🚀", "🇺🇸", "🇯🇵", "👨‍👩‍👧‍👦", "🧑🏻‍💻",
         "🏳️‍🌈", "✨", "🤖", "☕", "⚡", "🎉", "🙏🏿", "©️", "1️⃣", "#️⃣"]
CODE = [
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i] * b[i];\n}\n",
    "#include <vector>\nstd::vector<int> v{1, 2, 3};\nauto x = v.at(0) << 2;\n",
    "const f = async (x) => { await fetch(`/api/${x}`); return x?.y ?? null; };\n",
    "fn main() {\n    let s: &str = \"hi\";\n    println!(\"{s:?}\");\n}\n",
    "func (s *Server) Handle(w http.ResponseWriter, r *http.Request) {\n\tw.WriteHeader(200)\n}\n",
    "<div class=\"box\"><a href='https://example.com/?q=1&b=2'>link</a></div>\r\n",
    "{\"name\": \"x\", \"values\": [1, 2.5e-3, true, null], \"nested\": {\"k\": \"v\"}}",
    "SELECT id, name FROM users WHERE age >= 18 AND name LIKE '%son' ORDER BY id DESC;",
    "#!/bin/sh\nset -eu\nfor f in *.txt; do echo \"$f\" | tr a-z A-Z >> out.log; done\n",
    "    x = [i**2 for i in range(10) if i % 2 == 0]  # squares\n",
    "if (a && b || !c) { return a->b.c[0]; } // done\r\n",
    "match x {\n    Some(v) if v > 0 => v,\n    _ => -1,\n}\n",
    "@decorator\nclass Foo(Base):\n    \"\"\"Doc.\"\"\"\n    pass\n\n\n",
    "\\begin{equation} E = mc^2 \\end{equation}",
]
PUNCT = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + list("…—–“”‘’«»¿¡§¶†‡•′″€£¥©®™°±×÷→⇒∀∑√∞≈≠≤≥■□▲●★☆♠♣♥♦♪✓✗")
SPACES = [" ", "  ", "\t", "\n", "\r\n", "\r", "\n\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e",
          "\x1f", "\x85", "\xa0", "\u1680", "\u2000", "\u2003", "\u2009", "\u200a", "\u200b",
          "\u2028", "\u2029", "\u202f", "\u205f", "\u3000", "\ufeff", "\u180e"]
DIGITS = list("0123456789") + list("٠١٢٣٤٥٦٧٨٩") + list("０１２３４５６７８９") + list("²³¹¼½¾Ⅻ⑤")
ADDED = ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>",
         "<think>", "</think>", "｜DSML｜", "<｜DSML｜tool_calls>", "</｜DSML｜invoke>",
         "<｜place▁holder▁no▁7｜>", "<｜fim▁hole｜>", "<dsml:", "</dsml:", "<|EOT|>",
         "<｜User", "<thin", "｜DSM", "<｜/table>｜", "<tool_result>"]
INVALID = [b"\x80", b"\xbf", b"\xc0\x80", b"\xc1\xbf", b"\xe0\x80\x80", b"\xed\xa0\x80",
           b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"\xff", b"\xfe", b"\xc3", b"\xe4\xb8",
           b"\xf0\x9f\x98", b"\xe2\x82", b"\xc3\xc3\xa9", b"\x80\x80\x80", b"\xf0\x80\x80\x80"]


def _fragment(rng):
    kind = rng.randrange(10)
    if kind == 0:
        return rng.choice(ENGLISH)
    if kind == 1:
        return rng.choice(WORDS[rng.choice(sorted(WORDS))])
    if kind == 2:
        return "".join(rng.choice(DIGITS[:10]) for _ in range(rng.randint(1, 12)))
    if kind == 3:
        return "".join(rng.choice(PUNCT) for _ in range(rng.randint(1, 4)))
    if kind == 4:
        return rng.choice(SPACES)
    if kind == 5:
        return rng.choice(EMOJI)
    if kind == 6:
        return rng.choice(CJK_PUNCT) + rng.choice(WORDS[rng.choice(["zh", "ja"])])
    if kind == 7:
        code = rng.choice(CODE)
        start = rng.randrange(len(code))
        return code[start:start + rng.randint(1, 30)]
    if kind == 8:
        return rng.choice(DIGITS)
    return " " + rng.choice(ENGLISH)


def _sentence(rng, words, sep=" "):
    n = rng.randint(3, 18)
    out = sep.join(rng.choice(words) for _ in range(n))
    if rng.random() < 0.5:
        out = out[:1].upper() + out[1:]
    return out + rng.choice([".", "!", "?", "", ",", ":", "...", "\n"])


def _code_points(rng):
    out = []
    for cp in range(0, 0x110000, 331):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        ch = chr(cp)
        out.append(ch)
        out.append("a" + ch + "b")
        out.append(" " + ch + " " + ch + ch)
    out.extend(chr(cp) for cp in range(0x20, 0x250))
    out.extend(chr(cp) for cp in range(0x3000, 0x3100))
    return out


def _whitespace_runs(rng):
    out = []
    for _ in range(800):
        parts = []
        for _ in range(rng.randint(1, 6)):
            parts.append("".join(rng.choice(SPACES) for _ in range(rng.randint(1, 5))))
            parts.append(rng.choice(["", "x", "word", "!", "(", "1", "é", "中", "😀", ")\n"]))
        out.append("".join(parts))
    for n in range(1, 40):
        out.append(" " * n + "x")
        out.append("x" + " " * n)
        out.append("\t" * n + "y")
        out.append("\n" * n + " " * n + "z")
        out.append(" \n" * n + "z")
    return out


def _digit_runs(rng):
    out = [str(10 ** k) for k in range(60)]
    out += ["".join(rng.choice("0123456789") for _ in range(n)) for n in range(1, 120)]
    out += [f"{rng.randint(0, 10**9):,}" for _ in range(50)]
    out += [f"{rng.random() * 10**rng.randint(-5, 12):.6g}" for _ in range(50)]
    out += ["".join(rng.choice(DIGITS) for _ in range(rng.randint(1, 20))) for _ in range(100)]
    out += ["v1.2.3-rc4", "3.14159265358979", "0x7fffffff", "1e-10", "192.168.0.1:8080", "2024-06-11T12:34:56Z"]
    return out


def _invalid(rng):
    out = list(INVALID)
    for bad in INVALID:
        out.append(b"abc" + bad + b"def")
        out.append(bad + " 中文".encode() + bad)
        out.append(b"  " + bad + b"  x\n" + bad)
    for _ in range(400):
        out.append(bytes(rng.randrange(256) for _ in range(rng.randint(1, 24))))
    for _ in range(200):
        text = "".join(_fragment(rng) for _ in range(rng.randint(1, 8))).encode()
        cut = rng.randrange(len(text) + 1)
        out.append(text[:cut] + rng.choice(INVALID) + text[cut:])
    return out


def build_corpus():
    """The corpus as a list of byte strings, in a fixed order."""
    rng = random.Random(SEED)
    texts = []
    texts += [bytes([b]) for b in range(256)]
    texts += [s.encode() for s in _code_points(rng)]
    texts += [_sentence(rng, ENGLISH).encode() for _ in range(1200)]
    for lang in sorted(WORDS):
        sep = "" if lang in ("zh", "ja", "th") and rng.random() < 0.5 else " "
        texts += [_sentence(rng, WORDS[lang], sep).encode() for _ in range(120)]
    texts += ["".join(rng.choice(EMOJI + [" ", "a", "中"]) for _ in range(rng.randint(1, 10))).encode()
              for _ in range(300)]
    texts += [c.encode() for c in CODE]
    for _ in range(600):
        code = rng.choice(CODE)
        text = code * rng.randint(1, 3)
        if rng.random() < 0.3:
            text = text.replace("\n", "\r\n")
        if rng.random() < 0.3:
            text = text.replace("    ", "\t")
        texts.append(text.encode())
    texts += [s.encode() for s in _digit_runs(rng)]
    texts += [s.encode() for s in _whitespace_runs(rng)]
    texts += ["".join(rng.choice(PUNCT + CJK_PUNCT) for _ in range(rng.randint(1, 12))).encode()
              for _ in range(500)]
    texts += ["".join(_fragment(rng) for _ in range(rng.randint(1, 30))).encode() for _ in range(2500)]
    for _ in range(300):
        parts = [_fragment(rng) for _ in range(rng.randint(1, 6))]
        parts.insert(rng.randrange(len(parts) + 1), rng.choice(ADDED))
        texts.append("".join(parts).encode())
    texts += _invalid(rng)
    texts.append(b"")
    return texts
