"""Common Chinese surnames and given names with their pinyin.

Faker's zh_CN name lists are not paired with pinyin, but a Chinese shopper's email address is
usually the pinyin of their name (``zhangwei88@163.com``). This small table keeps the two in step.
Surname weights are approximate population shares in percent.
"""

from __future__ import annotations

SURNAMES: tuple[tuple[str, str, float], ...] = (
    ("王", "wang", 7.17), ("李", "li", 7.00), ("张", "zhang", 6.74), ("刘", "liu", 5.10),
    ("陈", "chen", 4.61), ("杨", "yang", 3.22), ("黄", "huang", 2.45), ("赵", "zhao", 2.00),
    ("吴", "wu", 2.00), ("周", "zhou", 1.90), ("徐", "xu", 1.45), ("孙", "sun", 1.38),
    ("马", "ma", 1.29), ("朱", "zhu", 1.28), ("胡", "hu", 1.16), ("郭", "guo", 1.13),
    ("何", "he", 1.06), ("高", "gao", 1.00), ("林", "lin", 1.00), ("罗", "luo", 0.95),
    ("郑", "zheng", 0.93), ("梁", "liang", 0.85), ("谢", "xie", 0.76), ("宋", "song", 0.70),
    ("唐", "tang", 0.65), ("许", "xu", 0.66), ("韩", "han", 0.65), ("冯", "feng", 0.60),
    ("邓", "deng", 0.58), ("曹", "cao", 0.57), ("彭", "peng", 0.55), ("曾", "zeng", 0.55),
    ("肖", "xiao", 0.53), ("田", "tian", 0.50), ("董", "dong", 0.50), ("袁", "yuan", 0.48),
    ("潘", "pan", 0.47), ("于", "yu", 0.45), ("蒋", "jiang", 0.45), ("蔡", "cai", 0.44),
    ("余", "yu", 0.43), ("杜", "du", 0.42), ("叶", "ye", 0.42), ("程", "cheng", 0.41),
    ("苏", "su", 0.40), ("魏", "wei", 0.39), ("吕", "lv", 0.38), ("丁", "ding", 0.37),
    ("任", "ren", 0.36), ("沈", "shen", 0.35), ("姚", "yao", 0.34), ("卢", "lu", 0.33),
    ("姜", "jiang", 0.32), ("崔", "cui", 0.31), ("钟", "zhong", 0.30), ("谭", "tan", 0.29),
    ("陆", "lu", 0.29), ("汪", "wang", 0.28), ("范", "fan", 0.27), ("金", "jin", 0.26),
    ("石", "shi", 0.25), ("廖", "liao", 0.24), ("贾", "jia", 0.23), ("夏", "xia", 0.22),
    ("韦", "wei", 0.22), ("付", "fu", 0.21), ("方", "fang", 0.21), ("白", "bai", 0.20),
    ("邹", "zou", 0.20), ("孟", "meng", 0.20), ("熊", "xiong", 0.19), ("秦", "qin", 0.19),
    ("邱", "qiu", 0.18), ("江", "jiang", 0.18), ("尹", "yin", 0.17), ("薛", "xue", 0.17),
)  # fmt: skip

GIVEN_MALE: tuple[tuple[str, str], ...] = (
    ("伟", "wei"), ("强", "qiang"), ("磊", "lei"), ("洋", "yang"), ("勇", "yong"),
    ("军", "jun"), ("杰", "jie"), ("涛", "tao"), ("超", "chao"), ("明", "ming"),
    ("刚", "gang"), ("平", "ping"), ("辉", "hui"), ("鹏", "peng"), ("华", "hua"),
    ("飞", "fei"), ("鑫", "xin"), ("波", "bo"), ("斌", "bin"), ("宇", "yu"),
    ("浩", "hao"), ("凯", "kai"), ("健", "jian"), ("俊", "jun"), ("帆", "fan"),
    ("帅", "shuai"), ("旭", "xu"), ("宁", "ning"), ("龙", "long"), ("林", "lin"),
    ("建华", "jianhua"), ("建国", "jianguo"), ("建军", "jianjun"), ("志强", "zhiqiang"),
    ("志明", "zhiming"), ("俊杰", "junjie"), ("浩然", "haoran"), ("子轩", "zixuan"),
    ("宇轩", "yuxuan"), ("博文", "bowen"), ("天宇", "tianyu"), ("文博", "wenbo"),
    ("晨阳", "chenyang"), ("海涛", "haitao"), ("国强", "guoqiang"), ("永刚", "yonggang"),
    ("金龙", "jinlong"), ("志伟", "zhiwei"), ("明轩", "mingxuan"), ("一鸣", "yiming"),
)  # fmt: skip

GIVEN_FEMALE: tuple[tuple[str, str], ...] = (
    ("芳", "fang"), ("娜", "na"), ("敏", "min"), ("静", "jing"), ("丽", "li"),
    ("艳", "yan"), ("娟", "juan"), ("霞", "xia"), ("燕", "yan"), ("玲", "ling"),
    ("婷", "ting"), ("雪", "xue"), ("琳", "lin"), ("颖", "ying"), ("洁", "jie"),
    ("欣", "xin"), ("倩", "qian"), ("萍", "ping"), ("丹", "dan"), ("蕾", "lei"),
    ("秀英", "xiuying"), ("桂英", "guiying"), ("秀兰", "xiulan"), ("玉兰", "yulan"),
    ("丽娟", "lijuan"), ("晓燕", "xiaoyan"), ("丽华", "lihua"), ("欣怡", "xinyi"),
    ("梓涵", "zihan"), ("诗涵", "shihan"), ("雨桐", "yutong"), ("思琪", "siqi"),
    ("佳怡", "jiayi"), ("子涵", "zihan"), ("可欣", "kexin"), ("紫萱", "zixuan"),
    ("雨欣", "yuxin"), ("一诺", "yinuo"), ("梦瑶", "mengyao"), ("晓丽", "xiaoli"),
    ("海燕", "haiyan"), ("春梅", "chunmei"), ("美玲", "meiling"), ("慧敏", "huimin"),
    ("雅琪", "yaqi"), ("静怡", "jingyi"), ("婉清", "wanqing"), ("佳琪", "jiaqi"),
    ("诗琪", "shiqi"), ("梦琪", "mengqi"),
)  # fmt: skip
