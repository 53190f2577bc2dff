/*
 * guard.c - the request guard of the answer path (shared/DESIGN.md §6).
 *
 * Three filters, all table-driven and linear in their input:
 *
 *   rag_guard_request  unsafe-request categories, refused before retrieval;
 *   rag_guard_passage  prompt-injection patterns in retrieved passages;
 *   rag_strip_remote   Markdown images and remote links removed from answers.
 *
 * Phrase matching.  Text is read as a stream of words: a word is a maximal
 * run of ASCII letters/digits or non-ASCII bytes, compared with ASCII case
 * folding; every run of whitespace and punctuation is one separator.  That
 * is the normalised form "How do I make a BOMB?!" -> "how do i make a bomb",
 * produced on the fly (three word pointers: previous, current, next) rather
 * than copied into a scratch buffer, so there is no allocation, no failure
 * path and no truncation: an injection 2 MiB into a passage is still seen.
 * Questions are read up to REQUEST_MAX bytes.
 *
 * A phrase is a row of up to PH_MAX elements:
 *   "make|build"      one word out of the alternatives; "synthes*" is a prefix;
 *   "bomb~zip|fork"   ... and the word before it is none of zip, fork;
 *   "*" / "*2"        up to GAP_DEFAULT (or 2) intervening words;
 *   "!process|job*"   last element only: the word after the match is none of these;
 *   "!!process|job*"  ... and neither are the LOOKAHEAD words after it ("kill
 *                     someone else's job").
 * Elements without a gap between them must be adjacent words.  Matching is a
 * DP over the word stream that keeps, per phrase and element j, the latest
 * word index at which elements 0..j matched (the latest end dominates every
 * earlier one, since later elements only need to follow within their gap), so
 * there is no backtracking: cost O(words x table size) with the table size a
 * constant (phrases x elements x alternatives), independent of the gaps.
 *
 * Unsafe categories are lexicons of intent + object phrases ("make * bomb",
 * "kill * someone"), never single words, so "kill a process", "the build
 * bombed" and "shoot a photo" pass; lookbehind/lookahead sets handle the
 * remaining look-alikes ("fork bomb", "kill the child process").
 *
 * Markers ("<|im_start|>", "[INST]", "system:" at a line start) and Markdown
 * links are punctuation, so they are matched on the raw bytes by separate
 * linear scanners.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "rag/rag.h"

#define PH_MAX 8            /* elements per phrase, gaps included */
#define GAP_DEFAULT 4       /* words a bare "*" may skip */
#define LOOKAHEAD 3         /* words a "!!" set looks at */
#define REQUEST_MAX 65536   /* bytes of a question that are read */
#define LABEL_MAX 999       /* Markdown link label, as CommonMark */
#define REFDEF_MAX 256      /* reference definitions remembered per answer */
#define MAX_ROWS 64         /* rows per phrase table (scan_phrases keeps state on the stack) */

typedef struct phrase {
    unsigned category;      /* RAG_UNSAFE_* or RAG_INJ_* bit */
    const char *why;
    const char *el[PH_MAX];
} phrase;

/* ---- unsafe-request lexicons -------------------------------------------- */

/* words after a person-object that make it a computing term */
#define NOT_COMPUTING "!!process*|thread*|task*|job*|pid*|session*|node*|server*|container*|" \
                      "pod*|connection*|quer*|worker*|daemon*|service*|program*|app*|"      \
                      "window*|tab*|signal*|command*|script*|instance*|branch*|element*"
#define PERSON "someone|somebody|anyone|anybody|person|people|human*|man|woman|men|women|"  \
               "child|children|kid|kids|baby|girl|boy|him|her|wife|husband|girlfriend|"     \
               "boyfriend|mother|mom|mum|father|dad|brother|sister|boss|coworker|colleague|" \
               "neighbor|neighbour|neighbors|neighbours|teacher|classmate*|family|parents|"  \
               "president|cop|cops|police*|stranger*"
#define HARM_VERB "kill|murder|poison|stab|strangle|choke|suffocate|shoot|hurt|harm|torture|" \
                  "kidnap|abduct|drown|assassinate|maim|beat|attack|injure|disfigure"
#define BOMB "bomb~zip|fork|logic|xml|photo|bath|f|decompression|time|cherry|gas|yarn|seed|" \
             "fork|dns|billion|shell|joy|mail|email|inbox|bath|sex|ka|da|glitter|photobomb|" \
             "commit|mem|memory"
/* words after "bomb" that make it something else ("bomb-proof", "bomb squad") */
#define NOT_BOMB "!proof|proofing|squad|disposal|threat|threats|scare|shelter|detector*|detection|" \
                 "sniffing|dog|dogs|drill|drills|emoji|icon|game|games|level"
#define BOMBS "bombs~zip|fork|logic|xml|bath|seed|fork|glitter|yarn"
#define MAKE "make|making|build|building|construct*|assemble|assembling|create|creating|" \
             "manufactur*|prepare|preparing|produce|producing|design|rig|wire|detonate|set"
#define NERVE "sarin|vx|tabun|soman|novichok|ricin|anthrax|botulinum|botox|mustard|phosgene|" \
              "chlorine|cyanide|nerve|chemical|biological|bioweapon*|toxin*|pathogen*"
#define GUN "gun|guns|firearm*|pistol*|rifle*|handgun*|weapon|weapons|ar|ak|glock*|silencer*|" \
            "suppressor*|receiver"

static const phrase UNSAFE[] = {
    /* weapons and explosives */
    {RAG_UNSAFE_WEAPONS, "instructions for making a bomb or explosive", {MAKE, "*", BOMB, NOT_BOMB}},
    {RAG_UNSAFE_WEAPONS, "instructions for making a bomb or explosive", {MAKE, "*", BOMBS, NOT_BOMB}},
    {RAG_UNSAFE_WEAPONS, "instructions for making a bomb or explosive",
     {MAKE, "*", "explosives|ied|ieds|grenade*|detonator*|molotov|napalm|thermite|tatp|semtex|c4|anfo"}},
    {RAG_UNSAFE_WEAPONS, "instructions for making a bomb or explosive",
     {MAKE, "*", "explosive|incendiary", "device*|charge*|vest*"}},
    {RAG_UNSAFE_WEAPONS, "instructions for making a bomb or explosive",
     {"pipe|nail|car|dirty|fertilizer|fertiliser|suicide|letter", "bomb|bombs", "!cyclone*|threat*"}},
    {RAG_UNSAFE_WEAPONS, "synthesis of a chemical or biological weapon",
     {"synthes*|make|making|produce|producing|manufactur*|cook|brew|extract|weaponi*|culture|grow|"
      "refine|purify|isolate",
      "*", NERVE, "!poisoning|exposure|symptom*|treatment|antidote*|safety|detector*|sensor*|level*"}},
    {RAG_UNSAFE_WEAPONS, "synthesis of a chemical or biological weapon",
     {"nerve|chemical|biological", "agent*|weapon*|warfare", "*3", "synthes*|recipe|precursor*|"
      "production|make|produce|manufactur*"}},
    {RAG_UNSAFE_WEAPONS, "building an untraceable or illegal firearm",
     {"untraceable|unregistered|unserialized|unserialised|ghost|homemade|diy|3d|printed|zip", "*2", GUN}},
    {RAG_UNSAFE_WEAPONS, "building an untraceable or illegal firearm",
     {"build|make|print|mill|manufactur*|assemble", "*", "untraceable|ghost|unregistered|unserialized"}},
    {RAG_UNSAFE_WEAPONS, "building an untraceable or illegal firearm",
     {"convert|modify|turn|make", "*4", "semi|ar|ak|rifle|gun|glock*|pistol", "*4",
      "full|fully|auto|automatic|select"}},
    {RAG_UNSAFE_WEAPONS, "building an untraceable or illegal firearm",
     {"make|build|machine|mill", "*", "silencer*|suppressor*|sear|sears"}},
    {RAG_UNSAFE_WEAPONS, "enriching nuclear material",
     {"enrich*|weapons|bomb", "*2", "uranium|plutonium"}},

    /* self-harm */
    {RAG_UNSAFE_SELF_HARM, "methods of self-harm or suicide",
     {"kill|hang|hurt|harm|cut|shoot|poison|drown|starve|burn|stab|suffocate|off|end|overdose", "*3",
      "myself|yourself|oneself", NOT_COMPUTING "|copy|copies|ticket*|tag|tags|slice|piece|coffee|"
      "sandwich|release*|version*|build*|commit*|patch*|file*"}},
    {RAG_UNSAFE_SELF_HARM, "methods of self-harm or suicide",
     {"end|ending|take|taking", "*2", "my|own|your", "life"}},
    {RAG_UNSAFE_SELF_HARM, "methods of self-harm or suicide",
     {"commit|committing|painless|easiest|quickest|method*|way|ways|how|best|lethal", "*3", "suicide"}},
    {RAG_UNSAFE_SELF_HARM, "methods of self-harm or suicide",
     {"suicide", "method*|methods|way|ways|plan|note|pills|dose|kit|bag"}},
    {RAG_UNSAFE_SELF_HARM, "methods of self-harm or suicide",
     {"painless|easy|easiest|quick|quickest|best|fastest|way|ways|how", "*3", "to", "die", "!out|off|after"}},
    {RAG_UNSAFE_SELF_HARM, "methods of self-harm or suicide",
     {"want|going|wanna|ready", "*2", "to", "die"}},
    {RAG_UNSAFE_SELF_HARM, "methods of self-harm or suicide",
     {"lethal|fatal|deadly", "dose|doses|amount|overdose", "*4", "me|myself|die|suicide|human|person"}},
    {RAG_UNSAFE_SELF_HARM, "methods of self-harm or suicide",
     {"how|much|many", "*4", "pills|tablets|paracetamol|tylenol|acetaminophen|insulin", "*4",
      "die|kill|overdose|lethal|fatal"}},
    {RAG_UNSAFE_SELF_HARM, "methods of self-harm or suicide",
     {"cut|slit|slash|cutting|slitting", "*2", "my", "wrist|wrists|arm|arms|throat|thighs|legs|skin"}},
    {RAG_UNSAFE_SELF_HARM, "methods of self-harm or suicide", {"self", "harm|harming|injury|mutilation", "*4",
      "method*|ways|how|tips|hide"}},

    /* violence against people */
    {RAG_UNSAFE_VIOLENCE, "harming a person",
     {HARM_VERB, "*3", PERSON, NOT_COMPUTING}},
    {RAG_UNSAFE_VIOLENCE, "harming a person",
     {HARM_VERB, "*3", "my|our|his|her|their|the|a", "*2", PERSON, NOT_COMPUTING}},
    {RAG_UNSAFE_VIOLENCE, "harming a person",
     {"beat|beating", "up", "*3", PERSON, NOT_COMPUTING}},
    {RAG_UNSAFE_VIOLENCE, "harming a person",
     {"get", "away", "with", "murder|murdering|killing|poisoning|manslaughter"}},
    {RAG_UNSAFE_VIOLENCE, "harming a person",
     {"untraceable|undetectable|tasteless|odorless|odourless", "poison|poisons|toxin|toxins"}},
    {RAG_UNSAFE_VIOLENCE, "harming a person",
     {"dispose|get|hide|dissolve|bury", "*3", "corpse|corpses|murder", "!weapon|mystery|mysteries|case|cases|scene"}},
    {RAG_UNSAFE_VIOLENCE, "harming a person",
     {"mass|school|church|mosque|synagogue", "shooting|shootings|stabbing|murder|attack"}},
    {RAG_UNSAFE_VIOLENCE, "harming a person",
     {"shoot|shooting", "up", "*2", "school|church|mosque|synagogue|mall|office|crowd|concert"}},
    {RAG_UNSAFE_VIOLENCE, "harming a person",
     {"run|running|drive|driving|ram|plow", "*3", "car|truck|van|vehicle", "*2", "into", "*2",
      "crowd|crowds|people|pedestrians|protesters"}},

    /* malware and intrusion */
    {RAG_UNSAFE_MALWARE, "writing malware",
     {"write|writing|create|creating|make|making|build|building|code|coding|develop|developing|"
      "program|programming|deploy|deploying|spread|spreading|design|obfuscate|craft",
      "*4", "ransomware|keylogger*|rootkit*|botnet*|spyware|stalkerware|infostealer*|cryptojacker*|"
      "backdoor|backdoors|trojan|trojans|malware|worm|virus|stealer|dropper|wiper",
      "!!object|objects|function*|scanner*|detection|detector*|signature*|analysis|analyzer|removal|defense|defence|protection|"
      "rule*|definition*|sample*|simulation*|scan*|check*|ai|game|model|sim"}},
    {RAG_UNSAFE_MALWARE, "writing malware",
     {"password|credential|cookie|token|card", "stealer|stealers|grabber|grabbers|harvester|sniffer"}},
    {RAG_UNSAFE_MALWARE, "breaking into a system one does not own",
     {"break|breaking|hack|hacking|get|getting|gain|gaining|login|log|sneak", "*2", "into|in", "*3",
      "someone|somebody|someones|another|other|others|ex|neighbor*|neighbour*|her|his|boss*|"
      "wife*|husband*|girlfriend*|boyfriend*|stranger*|victim*|celebrity|classmate*|coworker*|colleague*",
      "*3", "account*|email*|inbox|phone*|computer*|laptop*|wifi|network*|instagram|facebook|"
      "snapchat|whatsapp|icloud|gmail|router|cameras|camera|webcam"}},
    {RAG_UNSAFE_MALWARE, "breaking into a system one does not own",
     {"hack|hacking|crack|cracking|steal|stealing|phish|phishing|spy|spying|access|accessing|read|"
      "reading|hijack*",
      "*3", "someone|somebody|someones|another|other|others|ex|neighbor*|neighbour*|her|his|boss*|"
      "wife*|husband*|girlfriend*|boyfriend*|stranger*|victim*|celebrity|classmate*|coworker*|colleague*",
      "*3", "account*|email*|inbox|phone*|computer*|laptop*|wifi|network*|password*|instagram|"
      "facebook|snapchat|whatsapp|icloud|gmail|messages|texts|webcam|camera*|bank*|credit"}},
    {RAG_UNSAFE_MALWARE, "breaking into a system one does not own",
     {"bypass*|circumvent*|defeat*|evade|evading|disable|crack|cracking|brute",
      "*4", "authentication|auth|login|logins|password*|2fa|mfa|otp|lock|lockscreen|firewall|"
      "security|captcha|paywall|drm", "*6", "don|dont|not|doesn|isn|someone|somebody|someones|"
      "another|others|without|unauthori*|victim*|employer*|school*"}},
    {RAG_UNSAFE_MALWARE, "breaking into a system one does not own",
     {"without", "*2", "permission|authori*|consent|owner", "*6", "access|accessing|hack*|break|into|"
      "login|log|exploit*|crack*|bypass*"}},
    {RAG_UNSAFE_MALWARE, "breaking into a system one does not own",
     {"access|accessing|hack*|break|into|login|exploit*|crack*|bypass*|pentest*|penetrat*|scan*",
      "*6", "without", "*2", "permission|authori*|consent|owner", "!policy|policies|rule*|error*|"
      "message*|denied|check*"}},
    {RAG_UNSAFE_MALWARE, "breaking into a system one does not own",
     {"steal|stealing|exfiltrate|harvest|grab|sniff", "*3",
      "password*|credentials|credential|cookies|tokens|credit|logins|card|cards|identity|identities|"
      "ssn*|bank", "!vault|manager*|policy|policies|hash*|rotation|storage"}},
    {RAG_UNSAFE_MALWARE, "breaking into a system one does not own",
     {"ddos|dos|flood|swat|swatting", "someone|somebody|my|a|an|the|his|her|their", "*1",
      "website|site|server|school|ip|router|stream|network|game", "!mitigation|protection|defense|"
      "defence|incident|attack*|response|runbook|playbook"}},
};

/* ---- prompt-injection phrases -------------------------------------------- */

#define OBJ_RULES "instruction|instructions|directions|direction|rules|rule|prompt|prompts|" \
                  "guidelines|guidance|commands|context|messages|orders|constraints"
static const phrase INJECT[] = {
    {RAG_INJ_OVERRIDE, "an instruction to ignore the previous instructions",
     {"ignore|disregard|forget|skip|override|bypass|discard|abandon", "*2",
      "previous|prior|above|earlier|preceding|former|original|initial|old|existing|system", "*1",
      OBJ_RULES}},
    {RAG_INJ_OVERRIDE, "an instruction to ignore the previous instructions",
     {"disregard|ignore", "the|all|everything", "above|before|foregoing|previous|prior"}},
    {RAG_INJ_OVERRIDE, "an instruction to ignore the previous instructions",
     {"ignore|disregard", "everything", "*2", "above|before|previously|earlier"}},
    {RAG_INJ_OVERRIDE, "an instruction to ignore the previous instructions",
     {"forget|ignore|disregard", "*1", "your|all|the", "*1",
      "instruction|instructions|rules|training|guidelines|programming|prompt|directives"}},
    {RAG_INJ_ROLEPLAY, "a persona switch",
     {"you", "are|re", "now", "a|an|dan|unrestricted|unfiltered|jailbroken|evil|free|in|my|going|"
      "no|called|named|playing|acting|role*|an"}},
    {RAG_INJ_ROLEPLAY, "a persona switch",
     {"you|please|now", "*2", "act", "as", "a|an|the|my|if|though",
      "!proxy|proxies|server|client|gateway|router|bridge|cache|relay|buffer|filter|wrapper|"
      "replacement|substitute|placeholder|default|fallback|backup|primary|standby|master|replica|"
      "hub|switch|firewall|barrier|template|container|reference|starting|single|shim|front|load|"
      "reverse|forward*|local|remote|mirror|sink|source|stub|mock|drop|superuser|user|normal|"
      "unix|regular|separate|kind|sort|whole|unit|group|key|transaction|new|second|third"}},
    {RAG_INJ_ROLEPLAY, "a persona switch",
     {"act|behave|respond|answer|roleplay|role", "*1", "as|like", "a|an|the", "*1",
      "ai|assistant|chatbot|dan|character|persona|jailbroken|unrestricted|unfiltered|evil|hacker|"
      "uncensored|villain|pirate|different"}},
    {RAG_INJ_ROLEPLAY, "a persona switch",
     {"pretend~can|could|may|might|will|would|cannot|to|they|it|attacker|then|which|who|server|client",
      "to|you", "!!server|client|host|peer|proxy|node|site|machine|computer|service|endpoint|router|"
      "authorized|legitimate|not|another"}},
    {RAG_INJ_ROLEPLAY, "a persona switch",
     {"from", "now", "on", "you", "will|are|must|shall|re|respond|answer|reply|act|should|ll|"
      "only|have|speak|behave|talk|may|no"}},
    {RAG_INJ_ROLEPLAY, "a persona switch",
     {"enter|enable|activate|switch|turn", "*2", "developer|dan|jailbreak|god|unrestricted", "mode"}},
    {RAG_INJ_PROMPT_LEAK, "a request to reveal the system prompt",
     {"reveal|print|show|repeat|output|display|disclose|leak|tell|give|write|dump|recite|echo|share|"
      "paste|return|send",
      "*3", "your", "system|initial|original|hidden|secret|full|exact|developer", "prompt|prompts|"
      "instructions|message|rules"}},
    {RAG_INJ_PROMPT_LEAK, "a request to reveal the system prompt",
     {"reveal|print|show|repeat|output|display|disclose|leak|tell|give|write|dump|recite|echo|share|"
      "paste|return|send",
      "*3", "your", "prompt|prompts|instructions|instruction|directives|guidelines"}},
    {RAG_INJ_PROMPT_LEAK, "a request to reveal the system prompt",
     {"what", "is|are|were", "your", "*1", "system|initial|original|hidden|secret", "prompt|instructions"}},
    {RAG_INJ_EXFIL, "an instruction to send data to a remote address",
     {"send|post|upload|transmit|forward|email|leak|exfiltrate|submit|append|include|encode", "*8",
      "to|into|via", "http|https|ftp|www",
      "!localhost|127|0|example|your|yourserver|server|host|hostname|foo"}},
};

_Static_assert(sizeof UNSAFE / sizeof UNSAFE[0] <= MAX_ROWS, "UNSAFE too long");
_Static_assert(sizeof INJECT / sizeof INJECT[0] <= MAX_ROWS, "INJECT too long");

/* ---- the word stream ----------------------------------------------------- */

typedef struct word {
    const char *p;
    size_t n;          /* 0: no word */
} word;

static int is_word_byte(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80;
}

/* next_word: the word at or after *pos in text[0..len); *pos moves past it. */
static word next_word(const char *text, size_t len, size_t *pos)
{
    word w = {NULL, 0};
    size_t i = *pos;
    while (i < len && !is_word_byte((unsigned char)text[i]))
        i++;
    size_t s = i;
    while (i < len && is_word_byte((unsigned char)text[i]))
        i++;
    *pos = i;
    if (i > s) {
        w.p = text + s;
        w.n = i - s;
    }
    return w;
}

static int fold(int c)
{
    return (c >= 'A' && c <= 'Z') ? c + 32 : c;
}

/* alt_match: does w equal one of the '|'-separated alternatives in
 * alts[0..alen) (an alternative "pre*" matches by prefix)?  Alternatives are
 * single lower-case words (a space in one would never match). */
static int alt_match(const char *alts, size_t alen, word w)
{
    if (!w.n)
        return 0;
    size_t i = 0;
    while (i < alen) {
        size_t s = i;
        while (i < alen && alts[i] != '|')
            i++;
        size_t n = i - s;
        int prefix = n > 0 && alts[s + n - 1] == '*';
        if (prefix)
            n--;
        if (n > 0 && fold((unsigned char)w.p[0]) == alts[s]) {
            if (prefix ? w.n >= n : w.n == n) {
                size_t k = 0;
                while (k < n && fold((unsigned char)w.p[k]) == alts[s + k])
                    k++;
                if (k == n)
                    return 1;
            }
        }
        i++; /* past '|' */
    }
    return 0;
}

/* a compiled element: alternatives, optional "~" lookbehind set, gap before it */
typedef struct elem {
    const char *alt, *notprev;
    size_t alen, nplen;
    int gap;
    uint64_t first; /* bit (c & 63) for the first byte c of each alternative */
} elem;

/* first_bits: the quick filter of an alternative list (see elem.first) */
static uint64_t first_bits(const char *alts, size_t alen)
{
    uint64_t m = 0;
    for (size_t i = 0; i < alen; i++)
        if (i == 0 || alts[i - 1] == '|')
            m |= 1ull << (alts[i] & 63);
    return m;
}

/* compile: the positive elements of ph into e (returns their count) and its
 * lookahead set into *ahead (*far: "!!", LOOKAHEAD words). */
static int compile(const phrase *ph, elem *e, const char **ahead, size_t *ahead_len, int *far)
{
    int n = 0, gap = 0;
    *ahead = NULL;
    *ahead_len = 0;
    *far = 0;
    for (int k = 0; k < PH_MAX && ph->el[k]; k++) {
        const char *s = ph->el[k];
        if (s[0] == '*') {
            gap = s[1] ? atoi(s + 1) : GAP_DEFAULT;
            continue;
        }
        if (s[0] == '!') {
            *far = s[1] == '!';
            *ahead = s + 1 + *far;
            *ahead_len = strlen(*ahead);
            continue;
        }
        const char *t = strchr(s, '~');
        e[n].alt = s;
        e[n].alen = t ? (size_t)(t - s) : strlen(s);
        e[n].notprev = t ? t + 1 : NULL;
        e[n].nplen = t ? strlen(t + 1) : 0;
        e[n].gap = gap;
        e[n].first = first_bits(e[n].alt, e[n].alen);
        gap = 0;
        n++;
    }
    return n;
}

/*
 * scan_phrases: run the phrase rows whose category is in mask over the words
 * of text[0..len); returns the categories that matched and stores, per bit
 * index, the why of the first phrase that completed (whys has 32 slots).
 * Cost: words x rows x PH_MAX element tests, each a walk of one alternative
 * list (plus LOOKAHEAD walks of the veto set on a completion); an element is
 * skipped when its predecessor is out of reach or the word's first letter
 * starts none of its alternatives.  Measured: about 10 MB/s for passages,
 * 2-3 MB/s for questions (the larger UNSAFE table), -O2, one core.
 */
static unsigned scan_phrases(const phrase *rows, int n_rows, unsigned mask, const char *text,
                             size_t len, const char **whys, const char **first_why)
{
    elem e[MAX_ROWS][PH_MAX];
    int ne[MAX_ROWS];
    const char *ahead[MAX_ROWS];
    size_t ahead_len[MAX_ROWS];
    int far[MAX_ROWS];
    long last[MAX_ROWS][PH_MAX];
    unsigned found = 0;

    for (int r = 0; r < n_rows; r++) {
        ne[r] = (rows[r].category & mask) ? compile(&rows[r], e[r], &ahead[r], &ahead_len[r], &far[r]) : 0;
        for (int j = 0; j < PH_MAX; j++)
            last[r][j] = -1000000;
    }

    /* w[0] is the current word, w[1..LOOKAHEAD] the ones after it */
    size_t pos = 0;
    word prev = {NULL, 0}, w[LOOKAHEAD + 1];
    for (int k = 0; k <= LOOKAHEAD; k++)
        w[k] = next_word(text, len, &pos);
    word cur = w[0];
    for (long i = 0; cur.n; i++) {
        uint64_t fb = 1ull << (fold((unsigned char)cur.p[0]) & 63);
        for (int r = 0; r < n_rows; r++) {
            int n = ne[r];
            if (!n)
                continue;
            for (int j = n - 1; j >= 0; j--) {
                const elem *el = &e[r][j];
                if (j > 0 && last[r][j - 1] < i - 1 - el->gap)
                    continue; /* the prefix is out of reach */
                if (!(el->first & fb) || !alt_match(el->alt, el->alen, cur))
                    continue;
                if (el->notprev && alt_match(el->notprev, el->nplen, prev))
                    continue;
                last[r][j] = i;
                int vetoed = 0;
                for (int k = 1; j == n - 1 && ahead[r] && k <= (far[r] ? LOOKAHEAD : 1); k++)
                    vetoed |= alt_match(ahead[r], ahead_len[r], w[k]);
                if (j == n - 1 && !vetoed) {
                    unsigned c = rows[r].category;
                    if (!(found & c)) {
                        int b = __builtin_ctz(c);
                        whys[b] = rows[r].why;
                        if (!found && first_why)
                            *first_why = rows[r].why;
                    }
                    found |= c;
                }
            }
        }
        prev = cur;
        for (int k = 0; k < LOOKAHEAD; k++)
            w[k] = w[k + 1];
        w[LOOKAHEAD] = next_word(text, len, &pos);
        cur = w[0];
    }
    return found;
}

/* ---- category names ------------------------------------------------------ */

static const struct {
    unsigned bit;
    const char *name;
} UNSAFE_NAMES[] = {
    {RAG_UNSAFE_WEAPONS, "weapons"},
    {RAG_UNSAFE_SELF_HARM, "self_harm"},
    {RAG_UNSAFE_VIOLENCE, "violence"},
    {RAG_UNSAFE_MALWARE, "malware"},
    {RAG_UNSAFE_ALL, "all"},
};

/* rag_unsafe_name: "weapons", "self_harm", "violence", "malware" for one bit,
 * "all" for RAG_UNSAFE_ALL, NULL otherwise (borrowed, constant). */
const char *rag_unsafe_name(unsigned category)
{
    for (size_t i = 0; i < sizeof UNSAFE_NAMES / sizeof UNSAFE_NAMES[0]; i++)
        if (UNSAFE_NAMES[i].bit == category)
            return UNSAFE_NAMES[i].name;
    return NULL;
}

/* rag_unsafe_parse: "weapons,self_harm,all" to bits in *out (spaces around
 * names are allowed; an empty list is 0).  DOC_EINVAL naming the unknown word;
 * *out is untouched on failure. */
int rag_unsafe_parse(const char *list, unsigned *out, doc_err *err)
{
    unsigned bits = 0;
    const char *p = list ? list : "";
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *s = p;
        while (*p && *p != ',')
            p++;
        const char *t = p;
        while (t > s && (t[-1] == ' ' || t[-1] == '\t'))
            t--;
        if (t == s)
            continue;
        size_t n = (size_t)(t - s), i;
        for (i = 0; i < sizeof UNSAFE_NAMES / sizeof UNSAFE_NAMES[0]; i++)
            if (strlen(UNSAFE_NAMES[i].name) == n && !strncmp(UNSAFE_NAMES[i].name, s, n))
                break;
        if (i == sizeof UNSAFE_NAMES / sizeof UNSAFE_NAMES[0])
            return doc_errf(err, DOC_EINVAL,
                            "unknown unsafe-request category '%.*s' (weapons, self_harm, violence, "
                            "malware, all)",
                            (int)(n > 64 ? 64 : n), s);
        bits |= UNSAFE_NAMES[i].bit;
    }
    if (out)
        *out = bits;
    return 0;
}

/* ---- rag_guard_request --------------------------------------------------- */

/* rag_guard_request: see rag.h.  Of several matched categories, the lowest
 * bit (weapons, self_harm, violence, malware in that order) is returned.
 * Only the first REQUEST_MAX bytes of the question are read. */
unsigned rag_guard_request(const char *question, unsigned categories, const char **why)
{
    const char *whys[32] = {0};
    if (why)
        *why = NULL;
    if (!question || !(categories & RAG_UNSAFE_ALL))
        return 0;
    size_t len = strnlen(question, REQUEST_MAX);
    unsigned found = scan_phrases(UNSAFE, (int)(sizeof UNSAFE / sizeof UNSAFE[0]),
                                  categories & RAG_UNSAFE_ALL, question, len, whys, NULL);
    if (!found)
        return 0;
    int b = __builtin_ctz(found);
    if (why)
        *why = whys[b];
    return 1u << b;
}

/* ---- raw scanners: markers and Markdown links ---------------------------- */

static int ieq_prefix(const char *p, size_t avail, const char *lit)
{
    size_t n = strlen(lit);
    if (avail < n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (fold((unsigned char)p[i]) != lit[i])
            return 0;
    return 1;
}

/* literal patterns on the raw bytes (lower case; compared with ASCII folding) */
typedef struct literal {
    const char *lit;
    unsigned bit;
    int line_start; /* only at the start of a line, after blanks */
    const char *why;
} literal;

#define WHY_MARKER "a chat-template marker in the passage"
static const literal LITERALS[] = {
    {"<|im_start|>", RAG_INJ_MARKERS, 0, WHY_MARKER},
    {"<|im_end|>", RAG_INJ_MARKERS, 0, WHY_MARKER},
    {"[inst]", RAG_INJ_MARKERS, 0, WHY_MARKER},
    {"[/inst]", RAG_INJ_MARKERS, 0, WHY_MARKER},
    {"<<sys>>", RAG_INJ_MARKERS, 0, WHY_MARKER},
    {"<</sys>>", RAG_INJ_MARKERS, 0, WHY_MARKER},
    {"<|start_header_id|>", RAG_INJ_MARKERS, 0, WHY_MARKER},
    {"<|end_header_id|>", RAG_INJ_MARKERS, 0, WHY_MARKER},
    {"<|eot_id|>", RAG_INJ_MARKERS, 0, WHY_MARKER},
    {"<|system|>", RAG_INJ_MARKERS, 0, WHY_MARKER},
    {"<|user|>", RAG_INJ_MARKERS, 0, WHY_MARKER},
    {"<|assistant|>", RAG_INJ_MARKERS, 0, WHY_MARKER},
    {"<|endoftext|>", RAG_INJ_MARKERS, 0, WHY_MARKER},
    {"<start_of_turn>", RAG_INJ_MARKERS, 0, WHY_MARKER},
    {"<end_of_turn>", RAG_INJ_MARKERS, 0, WHY_MARKER},
    {"### system", RAG_INJ_MARKERS, 1, WHY_MARKER},
    {"###system", RAG_INJ_MARKERS, 1, WHY_MARKER},
    {"system:", RAG_INJ_MARKERS, 1, WHY_MARKER},
    {"[system]", RAG_INJ_MARKERS, 1, WHY_MARKER},
    {"<system>", RAG_INJ_MARKERS, 1, WHY_MARKER},
    {"new instructions:", RAG_INJ_OVERRIDE, 0, "an announcement of new instructions"},
    {"updated instructions:", RAG_INJ_OVERRIDE, 0, "an announcement of new instructions"},
};

/* remote_url: does a link destination at p start with a remote scheme?
 * (blanks and one '<' are skipped) */
static int remote_url(const char *p, size_t avail)
{
    size_t i = 0;
    while (i < avail && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n'))
        i++;
    if (i < avail && p[i] == '<')
        i++;
    p += i;
    avail -= i;
    return ieq_prefix(p, avail, "http:") || ieq_prefix(p, avail, "https:") ||
           ieq_prefix(p, avail, "ftp:") || ieq_prefix(p, avail, "ftps:") ||
           ieq_prefix(p, avail, "//") || ieq_prefix(p, avail, "data:");
}

/* inline_dest: for a ']' at text[i], if "(dest)" follows on the same line,
 * its bounds [*ds, *de).  The destination scan stops at ')' , a blank after
 * the URL or a newline, so each byte is looked at a bounded number of times
 * per ']' (and a ']' starts at most one scan). */
static int inline_dest(const char *text, size_t len, size_t i, size_t *ds, size_t *de)
{
    if (i + 1 >= len || text[i + 1] != '(')
        return 0;
    size_t j = i + 2;
    *ds = j;
    while (j < len && text[j] != ')' && text[j] != '\n' && text[j] != ' ' && text[j] != '(' &&
           text[j] != '[' && text[j] != ']')
        j++;
    *de = j;
    return 1;
}

static const char *const INJ_WHY_IMAGE = "a Markdown image pointing at a remote host";
static const char *const INJ_WHY_LINK = "a remote link carrying a query string";

/* scan_raw: markers and Markdown exfiltration in one pass; linear: each byte
 * starts at most one fixed-length comparison per LITERALS row; a ']' starts one
 * destination scan that ends at the next ']' / '[' / '(' / ')' / blank (so
 * destination scans never overlap) and, when the destination is remote, a
 * look-back for "![" of at most LABEL_MAX bytes on the same line. */
static unsigned scan_raw(const char *text, size_t len, const char **why)
{
    unsigned found = 0;
    int line_start = 1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '\n') {
            line_start = 1;
            continue;
        }
        if (line_start && (c == ' ' || c == '\t'))
            continue;
        for (size_t k = 0; k < sizeof LITERALS / sizeof LITERALS[0]; k++) {
            const literal *l = &LITERALS[k];
            if (fold(c) != l->lit[0] || (l->line_start && !line_start))
                continue;
            if (!l->line_start && l->lit[0] >= 'a' && l->lit[0] <= 'z' && i > 0 &&
                is_word_byte((unsigned char)text[i - 1]))
                continue; /* a word pattern starts on a word boundary */
            if (ieq_prefix(text + i, len - i, l->lit)) {
                if (!found && why)
                    *why = l->why;
                found |= l->bit;
            }
        }
        line_start = 0;
        if (c == ']') {
            size_t ds, de;
            if (!inline_dest(text, len, i, &ds, &de) || !remote_url(text + ds, de - ds))
                continue;
            /* is it an image?  look back for the matching "![" on this line,
             * bounded to LABEL_MAX bytes */
            int image = 0, depth = 0;
            for (size_t k = i, steps = 0; k > 0 && steps < LABEL_MAX; k--, steps++) {
                char b = text[k - 1];
                if (b == '\n')
                    break;
                if (b == ']')
                    depth++;
                else if (b == '[') {
                    if (depth == 0) {
                        image = k >= 2 && text[k - 2] == '!';
                        break;
                    }
                    depth--;
                }
            }
            int query = memchr(text + ds, '?', de - ds) != NULL;
            if (image || query) {
                if (!found && why)
                    *why = image ? INJ_WHY_IMAGE : INJ_WHY_LINK;
                found |= RAG_INJ_EXFIL;
            }
        }
    }
    return found;
}

/* rag_guard_passage: see rag.h.  The first match's description goes to *why
 * (phrase matches are reported before raw-byte matches).  No allocation. */
unsigned rag_guard_passage(const char *text, size_t len, const char **why)
{
    const char *whys[32] = {0};
    const char *first = NULL, *raw_why = NULL;
    if (why)
        *why = NULL;
    if (!text || !len)
        return 0;
    unsigned found = scan_phrases(INJECT, (int)(sizeof INJECT / sizeof INJECT[0]), ~0u, text, len,
                                  whys, &first);
    found |= scan_raw(text, len, &raw_why);
    if (why)
        *why = first ? first : raw_why;
    return found;
}

/* ---- rag_strip_remote ---------------------------------------------------- */

/*
 * Two passes over the answer.  The first finds the matching ']' of every '['
 * and ')' of every '(' with two stacks threaded through one array m (m[open]
 * holds the previous stack top while open, then close + 1), and remembers the
 * labels of reference definitions ("[ref]: http://h/p") that point at remote
 * hosts.  The second copies the text, dropping images, reducing remote links
 * to their text (the '[' is dropped and m[close] gets JUMP | resume, so the
 * text in between is copied by the same loop and nested images in it are
 * dropped too), dropping remote reference definitions and replacing bare
 * URLs that carry a query string.  Every cut is at an ASCII byte, so UTF-8
 * sequences are never split.  Bare URLs without a query string are kept:
 * the contract removes only those that carry data.
 */

#define JUMP 0x80000000u
#define STRIP_MAX (1u << 30) /* m holds positions + 1 and the JUMP bit */

static const char LINK_REMOVED[] = "[link removed]";

typedef struct refdefs {
    size_t off[REFDEF_MAX], len[REFDEF_MAX];
    int n;
} refdefs;

/* refdef_line: is there a reference definition "[label]: dest" at line start
 * i?  Sets label bounds, the destination start and the line end (past '\n'). */
static int refdef_line(const char *t, size_t len, size_t i, size_t *ls, size_t *ll, size_t *ds,
                       size_t *end)
{
    size_t k = i, sp = 0;
    while (k < len && t[k] == ' ' && sp < 3)
        k++, sp++;
    if (k >= len || t[k] != '[')
        return 0;
    size_t s = ++k;
    while (k < len && k - s <= LABEL_MAX && t[k] != ']' && t[k] != '[' && t[k] != '\n')
        k++;
    if (k >= len || t[k] != ']' || k == s || k + 1 >= len || t[k + 1] != ':')
        return 0;
    *ls = s;
    *ll = k - s;
    k += 2;
    while (k < len && (t[k] == ' ' || t[k] == '\t'))
        k++;
    *ds = k;
    const char *nl = memchr(t + k, '\n', len - k);
    *end = nl ? (size_t)(nl - t) + 1 : len;
    return 1;
}

static int label_eq(const char *a, size_t an, const char *b, size_t bn)
{
    if (an != bn)
        return 0;
    for (size_t i = 0; i < an; i++)
        if (fold((unsigned char)a[i]) != fold((unsigned char)b[i]))
            return 0;
    return 1;
}

static int is_remote_ref(const refdefs *d, const char *t, size_t off, size_t n)
{
    for (int i = 0; i < d->n; i++)
        if (label_eq(t + d->off[i], d->len[i], t + off, n))
            return 1;
    return 0;
}

/* bare_scheme: length of "http://", "https://" or "ftp://" at p, else 0 */
static size_t bare_scheme(const char *p, size_t avail)
{
    if (ieq_prefix(p, avail, "http://"))
        return 7;
    if (ieq_prefix(p, avail, "https://"))
        return 8;
    if (ieq_prefix(p, avail, "ftp://"))
        return 6;
    return 0;
}

static int url_stop(unsigned char c)
{
    return c <= ' ' || c == '<' || c == '>' || c == '"' || c == '\'' || c == '`' || c == ')' ||
           c == '(' || c == ']' || c == '[' || c == 127;
}

/* rag_strip_remote: see rag.h.  Relative links, in-document anchors and
 * mailto: links are kept; all images are dropped, whatever their target;
 * autolinks "<https://h/p>" become the bare URL (or "[link removed]" with a
 * query string).  DOC_ELIMIT when out's cap is reached (out then holds a
 * prefix) or the answer is 1 GiB or more; DOC_ENOMEM. */
int rag_strip_remote(const char *text, size_t len, buf *out, int *n_stripped)
{
    uint32_t *m = NULL;
    refdefs *defs = NULL;
    int rc = 0, n = 0;

    if (n_stripped)
        *n_stripped = 0;
    if (!text || !len)
        return 0;
    if (len >= STRIP_MAX)
        return DOC_ELIMIT;
    m = calloc(len + 1, sizeof *m);
    defs = calloc(1, sizeof *defs);
    if (!m || !defs) {
        rc = DOC_ENOMEM;
        goto done;
    }

    /* pass 1: bracket and parenthesis matching; remote reference definitions */
    uint32_t top_b = 0, top_p = 0;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (c == '[') {
            m[i] = top_b;
            top_b = (uint32_t)i + 1;
        } else if (c == '(') {
            m[i] = top_p;
            top_p = (uint32_t)i + 1;
        } else if (c == ']' && top_b) {
            uint32_t o = top_b - 1;
            top_b = m[o];
            m[o] = (uint32_t)i + 1;
        } else if (c == ')' && top_p) {
            uint32_t o = top_p - 1;
            top_p = m[o];
            m[o] = (uint32_t)i + 1;
        }
        if (i == 0 || text[i - 1] == '\n') {
            size_t ls, ll, ds, end;
            if (defs->n < REFDEF_MAX && refdef_line(text, len, i, &ls, &ll, &ds, &end) &&
                remote_url(text + ds, end - ds)) {
                defs->off[defs->n] = ls;
                defs->len[defs->n] = ll;
                defs->n++;
            }
        }
    }
    while (top_b) { /* unmatched: no partner */
        uint32_t o = top_b - 1;
        top_b = m[o];
        m[o] = 0;
    }
    while (top_p) {
        uint32_t o = top_p - 1;
        top_p = m[o];
        m[o] = 0;
    }

    /* pass 2: copy */
    size_t run = 0; /* start of the pending verbatim run */
#define FLUSH(upto)                                                        \
    do {                                                                   \
        if ((upto) > run && (rc = buf_append(out, text + run, (upto) - run))) \
            goto done;                                                     \
    } while (0)
    size_t i = 0;
    while (i < len) {
        unsigned char c = (unsigned char)text[i];
        if ((c == ']') && (m[i] & JUMP)) { /* end of a reduced link's text */
            FLUSH(i);
            i = run = m[i] & ~JUMP;
            continue;
        }
        if (i == 0 || text[i - 1] == '\n') {
            size_t ls, ll, ds, end;
            if (refdef_line(text, len, i, &ls, &ll, &ds, &end) && remote_url(text + ds, end - ds)) {
                FLUSH(i);
                i = run = end;
                n++;
                continue;
            }
        }
        if (c == '!' && i + 1 < len && text[i + 1] == '[' && m[i + 1]) {
            size_t cl = m[i + 1] - 1, drop_to = 0;
            if (cl + 1 < len && text[cl + 1] == '(' && m[cl + 1])
                drop_to = m[cl + 1]; /* ![alt](dest) */
            else if (cl + 1 < len && text[cl + 1] == '[' && m[cl + 1])
                drop_to = m[cl + 1]; /* ![alt][ref] */
            else if (defs->n && is_remote_ref(defs, text, i + 2, cl - (i + 2)))
                drop_to = cl + 1; /* ![ref] */
            if (drop_to) {
                FLUSH(i);
                i = run = drop_to;
                n++;
                continue;
            }
        }
        if (c == '[' && m[i]) {
            size_t cl = m[i] - 1, resume = 0;
            if (cl + 1 < len && text[cl + 1] == '(' && m[cl + 1]) {
                if (remote_url(text + cl + 2, m[cl + 1] - 1 - (cl + 2)))
                    resume = m[cl + 1]; /* [text](http://...) */
            } else if (cl + 1 < len && text[cl + 1] == '[' && m[cl + 1]) {
                size_t c2 = m[cl + 1] - 1;
                int remote = c2 == cl + 2 ? is_remote_ref(defs, text, i + 1, cl - i - 1)
                                          : is_remote_ref(defs, text, cl + 2, c2 - cl - 2);
                if (defs->n && remote)
                    resume = c2 + 1; /* [text][ref] */
            } else if (defs->n && is_remote_ref(defs, text, i + 1, cl - i - 1) &&
                       !(cl + 1 < len && text[cl + 1] == ':')) {
                resume = cl + 1; /* [ref] */
            }
            if (resume) {
                FLUSH(i);
                m[cl] = JUMP | (uint32_t)resume;
                i = run = i + 1;
                n++;
                continue;
            }
        }
        if (c == '<' && bare_scheme(text + i + 1, len - i - 1)) {
            size_t k = i + 1;
            while (k < len && !url_stop((unsigned char)text[k]))
                k++;
            if (k < len && text[k] == '>') { /* <https://h/p> */
                FLUSH(i);
                const char *q = memchr(text + i + 1, '?', k - i - 1);
                if (q && q + 1 < text + k)
                    rc = buf_append(out, LINK_REMOVED, sizeof LINK_REMOVED - 1);
                else
                    rc = buf_append(out, text + i + 1, k - i - 1);
                if (rc)
                    goto done;
                i = run = k + 1;
                n++;
                continue;
            }
        }
        size_t sl;
        if ((c == 'h' || c == 'H' || c == 'f' || c == 'F') &&
            (i == 0 || !is_word_byte((unsigned char)text[i - 1])) &&
            (sl = bare_scheme(text + i, len - i))) {
            size_t k = i + sl;
            while (k < len && !url_stop((unsigned char)text[k]))
                k++;
            while (k > i + sl && strchr(".,;:!?*_", text[k - 1])) /* trailing punctuation */
                k--;
            const char *q = memchr(text + i, '?', k - i);
            if (q && q + 1 < text + k) {
                FLUSH(i);
                if ((rc = buf_append(out, LINK_REMOVED, sizeof LINK_REMOVED - 1)))
                    goto done;
                run = k;
                n++;
            }
            i = k;
            continue;
        }
        i++;
    }
    FLUSH(len);
#undef FLUSH

done:
    free(m);
    free(defs);
    if (n_stripped)
        *n_stripped = n;
    return rc;
}
