# Issue 21: "Create article from this" marks a group of unanswered questions handled as "created".
# Numbered 0016 on purpose (0015 belongs to the help-center slice); depends on 0014 until the merge renumbers.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('knowledge', '0015_helpcenter'),
    ]

    operations = [
        migrations.AlterField(
            model_name='learnedquestion',
            name='action',
            field=models.CharField(choices=[('attached', 'Added as a phrasing'), ('dismissed', 'Dismissed'), ('created', 'Article created')], max_length=16),
        ),
    ]
